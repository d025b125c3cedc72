"""Helpers of the dedup and processor-shell tests: each test gets its own topic prefix on the shared
broker, topics with 3 partitions and replication 1, and reads outputs back with ``read_committed``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from voicecall import topics
from voicecall.dedup.config import DedupSettings as _DedupSettings

PARTITIONS = 3


class DedupSettings(_DedupSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> DedupSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap, "topic_prefix": prefix, "topic_partitions": PARTITIONS,
        "topic_replication": 1, "topic_min_insync": 1, "metrics_port": 0, "batch_time": 0.05,
        "consumer_session_timeout": 6.0,
    }
    values.update(overrides)
    return DedupSettings(**values)


def env_for(settings: DedupSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall dedup`` subprocess needs to work on the test's broker and prefix."""
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
        "VOICECALL_DEDUP_WINDOW": str(settings.dedup_window),
    })
    env.update(extra)
    return env


async def produce(settings: DedupSettings, suffix: str,
                  records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
                  partition: int | None = None) -> None:
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


async def read_all(settings: DedupSettings, suffix: str, *, idle: float = 1.0, timeout: float = 60.0,
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


async def committed_offsets(settings: DedupSettings, group: str, suffix: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        topic = topics.name(settings, suffix)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


def cdr(n: int, end: str = "2026-11-23 10:00:00", **changes: Any) -> dict[str, Any]:
    """A voice-callback CDR shaped like the platform's (reference §2 and example F2)."""
    doc: dict[str, Any] = {
        "direction": 0, "spId": "sp-test", "appKey": "app-key-test", "icid": f"icid.{n}",
        "bindNum": "+8675566660000", "sessionId": f"1200_{n}_0_20261123100000@callenabler.home1.com",
        "callerNum": "+8675566660000", "calleeNum": "+8675588880000", "fwdDisplayNum": "+8675566660000",
        "fwdDstNum": "+8675588880001", "callOutStartTime": "2026-11-23 09:58:00",
        "callOutAlertingTime": "2026-11-23 09:58:05", "callOutAnswerTime": "2026-11-23 09:58:09",
        "callOutUnaswRsn": 0, "fwdStartTime": "2026-11-23 09:58:10", "fwdAlertingTime": "2026-11-23 09:58:12",
        "fwdAnswerTime": "2026-11-23 09:58:15", "callEndTime": end, "fwdUnaswRsn": 0, "ulFailReason": 0,
        "sipStatusCode": 0, "recordFlag": 0, "ttsPlayTimes": 0, "ttsTransDuration": 0, "serviceType": "002",
        "hostName": "callenabler245.huaweicaas.com", "userData": f"order-{n}",
    }
    doc.update(changes)
    return doc


def fee_record(doc: dict[str, Any], ce_id: str | None = None
               ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` as the ingress writes a fee record to fee.raw."""
    from voicecall.runtime import cloudevents

    headers = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/ingress", ce_id=ce_id,
                                  extra=[("voicecall_received", cloudevents.now_iso().encode())])
    key = doc["sessionId"].encode() if isinstance(doc.get("sessionId"), str) else None
    return key, orjson.dumps(doc), headers
