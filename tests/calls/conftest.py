"""Fixtures of the calls tests: settings on a topic prefix of their own (helpers live in calls_helpers.py)."""

from __future__ import annotations

import uuid

import pytest
from calls_helpers import KafkaCallsSettings, settings_for

from voicecall import topics


@pytest.fixture
def fresh_settings(kafka_bootstrap: str) -> KafkaCallsSettings:
    """Settings on a prefix of their own; no topic exists yet."""
    return settings_for(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}.")


@pytest.fixture
async def settings(fresh_settings: KafkaCallsSettings) -> KafkaCallsSettings:
    await topics.create(fresh_settings)
    return fresh_settings
