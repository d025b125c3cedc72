"""Helpers shared by the replay tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from voicecall import topics
from voicecall.replay import names
from voicecall.runtime import cloudevents
from voicecall.runtime.kafka import make_consumer


@dataclass
class Area:
    settings: topics.TopicSettings
    prefix: str
    bootstrap: str

    def topic(self, suffix: str) -> str:
        return topics.name(self.settings, suffix)

    def env(self) -> dict[str, str]:
        """The environment a `voicecall …` subprocess needs to see this area."""
        env = dict(os.environ)
        env.update({"VOICECALL_KAFKA_BOOTSTRAP": self.bootstrap, "VOICECALL_TOPIC_PREFIX": self.prefix,
                    "VOICECALL_LOG_FORMAT": "json"})
        return env


def fee_headers(session_id: str, ce_id: str | None = None) -> cloudevents.Headers:
    return cloudevents.headers(cloudevents.TYPE_FEE, "/test/replay", ce_id=ce_id or f"fee-{session_id}")


def fee_value(session_id: str, n: int) -> bytes:
    return orjson.dumps({"sessionId": session_id, "direction": 0, "spId": "sp", "appKey": "ak", "bindNum": "+861",
                         "callerNum": "+862", "calleeNum": "+863", "fwdAnswerTime": "", "n": n})


async def read_all(area: Area, suffix: str, expected: int | None = None, idle: float = 1.0) -> list[Any]:
    """Every committed record of a topic (at least ``expected`` of them), sorted by partition and offset."""
    consumer = make_consumer(area.settings, group_id=None)
    await consumer.start()
    try:
        topic = area.topic(suffix)
        tps = [TopicPartition(topic, p) for p in (await names.partitions(area.settings))[topic]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(tps)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps) and (expected is None or len(records) >= expected):
                break
            fetched = await consumer.getmany(timeout_ms=int(idle * 1000))
            for batch in fetched.values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
