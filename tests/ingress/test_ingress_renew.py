"""A producer whose idempotence state the broker rejects (after a broker restart) is replaced, once at a time."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from voicecall.ingress.publisher import Publisher


async def test_fatal_producer_errors_start_one_renewal() -> None:
    calls = 0
    release = asyncio.Event()

    async def renew() -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    publisher = Publisher(None, None, 1.0, renew=renew)
    publisher._renew_if_fatal(KafkaConnectionError())
    await asyncio.sleep(0)
    assert calls == 0  # an unreachable broker is waited out, not a reason for a new producer
    publisher._renew_if_fatal(OutOfOrderSequenceNumber())
    publisher._renew_if_fatal(OutOfOrderSequenceNumber())  # while one renewal runs, no second one
    await asyncio.sleep(0)
    assert calls == 1
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(OutOfOrderSequenceNumber())
    release.set()
    await asyncio.sleep(0)
    publisher._renew_if_fatal(TimeoutError(), [failed])  # the cause may sit in a record's future
    await asyncio.sleep(0)
    assert calls == 2
    await publisher.stop()
