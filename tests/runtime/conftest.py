"""Fixtures of the stage-shell tests: settings on a topic prefix of their own."""

from __future__ import annotations

import pytest

from kafka_helpers import new_prefix, settings_values
from voicecall import topics
from voicecall.runtime.stage import StageSettings


class ShellSettings(StageSettings, topics.TopicSettings):
    """The shell's settings plus the topic settings ``topics.create`` needs."""


@pytest.fixture
def fresh_settings(kafka_bootstrap: str) -> ShellSettings:
    """Settings on a prefix of its own; no topic exists yet."""
    return ShellSettings(**settings_values(kafka_bootstrap, new_prefix()))


@pytest.fixture
async def settings(fresh_settings: ShellSettings) -> ShellSettings:
    await topics.create(fresh_settings)
    return fresh_settings
