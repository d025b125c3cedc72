"""Fixtures of the dedup tests (helpers live in dedup_helpers.py)."""

from __future__ import annotations

import pytest
from dedup_helpers import DedupSettings, settings_for

from kafka_helpers import new_prefix
from voicecall import topics


@pytest.fixture
async def settings(kafka_bootstrap: str) -> DedupSettings:
    result = settings_for(kafka_bootstrap, new_prefix())
    await topics.create(result)
    return result
