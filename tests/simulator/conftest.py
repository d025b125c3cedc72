"""Fixtures of the simulator tests: a push receiver on loopback. No Kafka is involved in these tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from simulator_helpers import Receiver


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.stop()
