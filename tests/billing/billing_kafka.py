"""Helpers of the billing Kafka tests: settings on a test prefix (3 partitions, replication 1), the environment of a
``voicecall billing`` subprocess, producing and reading back with ``read_committed``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from voicecall import topics
from voicecall.billing.config import BillingSettings as _BillingSettings

PARTITIONS = 3


class BillingSettings(_BillingSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> BillingSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap, "topic_prefix": prefix, "topic_partitions": PARTITIONS,
        "topic_replication": 1, "topic_min_insync": 1, "metrics_port": 0, "metrics_host": "127.0.0.1",
        "batch_time": 0.05, "consumer_session_timeout": 6.0,  # Apache Kafka's group.min.session.timeout.ms
    }
    values.update(overrides)
    return BillingSettings(**values)


def env_for(settings: BillingSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall billing`` subprocess needs to work on the test's broker and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_METRICS_PORT": "0",
        "VOICECALL_METRICS_HOST": "127.0.0.1",
        "VOICECALL_LOG_FORMAT": "json",
        "VOICECALL_BATCH_TIME": str(settings.batch_time),
        "VOICECALL_BATCH_RECORDS": str(settings.batch_records),
        "VOICECALL_CONSUMER_SESSION_TIMEOUT": str(settings.consumer_session_timeout),
        "VOICECALL_BILLING_TARIFF": ",".join(f"{k}={v}" for k, v in settings.billing_tariff.items()),
        "VOICECALL_BILLING_CURRENCY": settings.billing_currency,
    })
    env.update(extra)
    return env


async def produce(settings: BillingSettings, suffix: str,
                  records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topics.name(settings, suffix), value=value, key=key, headers=headers)
                   for key, value, headers in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(settings: BillingSettings, suffix: str, *, idle: float = 1.0, timeout: float = 60.0,
                   expect: int | None = None) -> list[ConsumerRecord[bytes, bytes]]:
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
        result: list[ConsumerRecord[bytes, bytes]] = []
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


async def end_offsets(settings: BillingSettings, suffix: str) -> int:
    """Sum of the topic's last stable offsets (grows with every committed transaction; markers count too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        topic = topics.name(settings, suffix)
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or range(PARTITIONS))]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
