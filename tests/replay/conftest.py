"""Fixtures for the replay tests: an isolated topic set (unique prefix, 3 partitions) on the session broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay_helpers import Area

from voicecall import topics
from voicecall.runtime import config
from voicecall.runtime.kafka import make_producer


@pytest.fixture
async def area(kafka_bootstrap: str) -> Area:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = config.load(topics.TopicSettings, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix,
                           topic_partitions=3, topic_replication=1)
    await topics.create(settings)
    return Area(settings, prefix, kafka_bootstrap)


@pytest.fixture
async def producer(area: Area) -> AsyncIterator[Any]:
    p = make_producer(area.settings, linger_ms=5)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
