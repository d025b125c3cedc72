"""Kafka helpers shared by the test packages: produce records, read a topic back (``read_committed``), read a
group's committed offsets. Each test gets its own topic prefix on the session broker, with topics of
:data:`PARTITIONS` partitions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from voicecall import topics
from voicecall.runtime.config import CommonSettings

PARTITIONS = 3

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


def settings_values(bootstrap: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    """Settings values for a test: its prefix, small topics (3 partitions, replication 1), short batches."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap, "topic_prefix": prefix, "topic_partitions": PARTITIONS,
        "topic_replication": 1, "topic_min_insync": 1, "metrics_port": 0, "batch_time": 0.05,
        "consumer_session_timeout": 6.0,
    }
    values.update(overrides)
    return values


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
    """Every committed record of a topic: reads until ``expect`` records arrived (if given) and then nothing new
    came for ``idle`` seconds, or ``timeout`` passed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    topic = topics.name(settings, suffix)
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or range(PARTITIONS))]
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


async def committed_offsets(settings: CommonSettings, group: str, suffix: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        topic = topics.name(settings, suffix)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()
