"""Kafka helpers shared by the test packages: settings on a topic prefix of the test's own (topics of
:data:`PARTITIONS` partitions on the session broker), the environment of a ``voicecall …`` subprocess, producing
records, reading a topic back (``read_committed``), a topic's end offsets and a group's committed offsets.

Helpers of one test folder live next to its tests as ``<folder>_helpers.py`` (e.g. ``dedup/dedup_helpers.py``);
what more than one folder needs lives here, at the root of ``tests/``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from voicecall import topics
from voicecall.replay import names
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import make_consumer
from voicecall.runtime.stage import Stage, StageSettings, run_stage

PARTITIONS = 3

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


def new_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:8]}."


def settings_values(bootstrap: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    """Settings values for a test: its prefix, small topics (3 partitions, replication 1), short batches, /metrics
    on a free loopback port."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap, "topic_prefix": prefix, "topic_partitions": PARTITIONS,
        "topic_replication": 1, "topic_min_insync": 1, "metrics_port": 0, "metrics_host": "127.0.0.1",
        "batch_time": 0.05,
        "consumer_session_timeout": 6.0,  # Apache Kafka's group.min.session.timeout.ms
    }
    values.update(overrides)
    return values


async def fresh_topics(bootstrap: str) -> topics.TopicSettings:
    """Every topic of the table, small, under a prefix of the test's own; returns their settings."""
    settings = topics.TopicSettings(**settings_values(bootstrap, new_prefix()))
    await topics.create(settings)
    return settings


async def create_topics(settings: CommonSettings) -> topics.TopicSettings:
    """Every topic of the table on the broker and prefix of ``settings``, small (see :func:`settings_values`);
    returns the topic settings used."""
    small = topics.TopicSettings(**settings_values(settings.kafka_bootstrap, settings.topic_prefix))
    await topics.create(small)
    return small


def service_env(settings: CommonSettings, **extra: str) -> dict[str, str]:
    """The environment of a ``voicecall …`` subprocess on the test's broker and prefix: none of the caller's own
    ``VOICECALL_*`` variables, JSON logs, /metrics on a free loopback port, the batching of a stage's ``settings``;
    then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_METRICS_PORT": "0",
        "VOICECALL_METRICS_HOST": "127.0.0.1",
        "VOICECALL_LOG_FORMAT": "json",
    })
    if isinstance(settings, StageSettings):
        env.update({
            "VOICECALL_BATCH_TIME": str(settings.batch_time),
            "VOICECALL_BATCH_RECORDS": str(settings.batch_records),
            "VOICECALL_CONSUMER_SESSION_TIMEOUT": str(settings.consumer_session_timeout),
        })
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running_stage(settings: CommonSettings, stage: Stage) -> AsyncIterator[asyncio.Task[None]]:
    """``stage`` run in this process, entered once it owns its partitions; stopped on exit, and its task must then
    end without an exception (a clean stop)."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    try:  # a stage that fails or hangs while starting is stopped too, not left running into the next test
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({waiter, task}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # it ended before it was ready: its exception
        assert ready.is_set(), f"stage {stage.name} not ready within 60 s"
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def produce(settings: CommonSettings, suffix: str, records: Iterable[Raw], partition: int | None = None
                  ) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topics.name(settings, suffix), value=value, key=key, headers=headers,
                                       partition=partition)
                   for key, value, headers in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(settings: CommonSettings, suffix: str, *, idle: float = 1.0, timeout: float = 60.0,
                   expect: int | None = None) -> list[Any]:
    """Every committed record of a topic, for output that is still arriving: reads until ``expect`` records
    arrived (if given) and then nothing new came for ``idle`` seconds, or ``timeout`` passed."""
    topic = topics.name(settings, suffix)
    tps = [TopicPartition(topic, p) for p in (await names.partitions(settings))[topic]]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        result: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_new = loop.time()
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                result.extend(records)
            if batch:
                last_new = loop.time()
            elif (expect is None or len(result) >= expect) and loop.time() - last_new >= idle:
                break
        return result
    finally:
        await consumer.stop()


async def read_to_end(settings: CommonSettings, suffix: str, expected: int | None = None, poll: float = 1.0,
                      timeout: float = 30.0) -> list[Any]:
    """Every committed record of a topic up to its end offsets now (at least ``expected`` of them, if given; what
    there is after ``timeout``), sorted by partition and offset."""
    topic = topics.name(settings, suffix)
    tps = [TopicPartition(topic, p) for p in (await names.partitions(settings))[topic]]
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(tps)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps) and (expected is None or len(records) >= expected):
                break
            fetched = await consumer.getmany(timeout_ms=int(poll * 1000))
            for batch in fetched.values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def end_offsets(settings: CommonSettings, suffix: str) -> int:
    """Sum of the topic's last stable offsets (grows with every committed transaction; markers count too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        topic = topics.name(settings, suffix)
        tps = [TopicPartition(topic, p) for p in (await names.partitions(settings))[topic]]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def committed_offsets(settings: CommonSettings, group: str, suffix: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        topic = topics.name(settings, suffix)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()
