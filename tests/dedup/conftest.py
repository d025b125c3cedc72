"""Fixtures of the dedup tests (helpers live in dedup_helpers.py)."""

from __future__ import annotations

import uuid

import pytest
from dedup_helpers import DedupSettings, settings_for

from voicecall import topics


@pytest.fixture
async def settings(kafka_bootstrap: str) -> DedupSettings:
    result = settings_for(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}.")
    await topics.create(result)
    return result

