"""Fixtures for the replay tests: an isolated topic set (unique prefix, 3 partitions) on the session broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay_helpers import Area

from kafka_helpers import fresh_topics
from voicecall.runtime.kafka import make_producer


@pytest.fixture
async def area(kafka_bootstrap: str) -> Area:
    return Area(await fresh_topics(kafka_bootstrap))


@pytest.fixture
async def producer(area: Area) -> AsyncIterator[Any]:
    p = make_producer(area.settings, linger_ms=5)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
