"""The publisher owns its producer: a producer whose idempotence state the broker rejects (after a broker restart)
is replaced by a fresh one, once at a time, and pushes go on through the new one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber, ProducerClosed
from ingress_support import create_topics, fee_push, ingress_settings

from voicecall.ingress.parse import Parser
from voicecall.ingress.publisher import Publisher


async def until(condition: Callable[[], bool], timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


async def test_fatal_producer_errors_start_one_renewal(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool")
    await create_topics(settings)
    records = Parser(settings).parse(orjson.dumps(fee_push(2)), received="2026-01-01T00:00:00.000Z", push_id="p-1",
                                     origin={"path": "/notify", "client": "c"}).records
    publisher = Publisher(settings, None)
    assert publisher.ready()[0] is False  # no producer yet, no spool
    publisher.start()
    try:
        await until(lambda: publisher.producer is not None, 30)
        first = publisher.producer
        assert publisher.ready() == (True, {"broker": "up"})
        assert await publisher.publish(records) == "kafka"

        publisher._renew_if_fatal(KafkaConnectionError())
        assert publisher._renewing is None  # an unreachable broker is waited out, not a reason for a new producer
        publisher._renew_if_fatal(OutOfOrderSequenceNumber())
        renewal = publisher._renewing
        publisher._renew_if_fatal(OutOfOrderSequenceNumber())
        assert renewal is not None and publisher._renewing is renewal  # while one renewal runs, no second one
        await asyncio.wait_for(renewal, 30)
        second = publisher.producer
        assert second is not first
        assert second._txn_manager.producer_id != first._txn_manager.producer_id  # what the renewal is for
        with pytest.raises(ProducerClosed):
            await first.send(records[0].topic, b"x")  # the old one was stopped
        assert await publisher.publish(records) == "kafka"

        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(OutOfOrderSequenceNumber())
        publisher._renew_if_fatal(TimeoutError(), [failed])  # the cause may sit in a record's future
        assert publisher._renewing is not renewal
        await asyncio.wait_for(publisher._renewing, 30)
        assert publisher.producer is not second
        assert await publisher.publish(records) == "kafka"
    finally:
        await publisher.stop()


async def test_producer_started_once_kafka_comes(tmp_path: Path) -> None:
    """No broker at first: the start is retried (the error shown by /readyz) until Kafka comes, then pushes go to it
    and the spool written meanwhile drains."""
    from ingress_support import read_topic

    from voicecall.devenv.broker import start_broker
    from voicecall.devenv.ports import free_port
    from voicecall.ingress.spool import Spool

    port = free_port()
    settings = ingress_settings(f"127.0.0.1:{port}", tmp_path / "spool")
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 16)
    spool.open()
    parser = Parser(settings)

    def push(tag: str) -> Any:
        return parser.parse(orjson.dumps(fee_push(1, tag=tag)), received="2026-01-01T00:00:00.000Z", push_id=tag,
                            origin={"path": "/notify", "client": "c"}).records

    publisher = Publisher(settings, spool)
    publisher.start()
    broker = None
    try:
        await until(lambda: publisher.broker_error is not None, 30)
        ok, detail = publisher.ready()
        assert ok and detail["broker"] == "down" and "broker_error" in detail  # ready: the spool takes pushes
        assert await publisher.publish(push("early-")) == "spool"
        broker = await asyncio.to_thread(start_broker, "apache", port=port, state_dir=tmp_path / "broker")
        await create_topics(settings)
        await until(lambda: publisher.producer is not None and not spool.has_backlog, 60)
        assert publisher.ready() == (True, {"broker": "up", "spool": spool.state()})
        assert await publisher.publish(push("late-")) == "kafka"
        keys = {r.key.decode() for r in await read_topic(settings, "fee.raw", 2)}
        assert keys == {"early-sess-0@callenabler245.huaweicaas.com", "late-sess-0@callenabler245.huaweicaas.com"}
    finally:
        await publisher.stop()
        await spool.close()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
