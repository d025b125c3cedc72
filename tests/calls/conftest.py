"""Fixtures of the calls tests: settings on a topic prefix of their own (helpers live in calls_helpers.py)."""

from __future__ import annotations

import pytest
from calls_helpers import KafkaCallsSettings, settings_for

from kafka_helpers import new_prefix
from voicecall import topics


@pytest.fixture
def fresh_settings(kafka_bootstrap: str) -> KafkaCallsSettings:
    """Settings on a prefix of their own; no topic exists yet."""
    return settings_for(kafka_bootstrap, new_prefix())


@pytest.fixture
async def settings(fresh_settings: KafkaCallsSettings) -> KafkaCallsSettings:
    await topics.create(fresh_settings)
    return fresh_settings
