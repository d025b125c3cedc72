"""The exactly-once shell on a real broker, with small cores written for the test: passthrough, a core that raises
(deadletter, no crash) and a stateful counter whose state comes back from the changelog."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from kafka_helpers import committed_offsets, produce, read_all
from voicecall import topics
from voicecall.runtime import kafka
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.stage import Core, Record, Stage, run_stage


class Passthrough:
    def __init__(self, settings: CommonSettings) -> None:
        self.out = topics.name(settings, "fee.unique")

    def process(self, record: ConsumerRecord) -> list[Record]:
        if record.value == b"boom":
            raise ValueError("boom")
        return [Record(self.out, record.key, record.value, list(record.headers))]

    def restore(self, record: ConsumerRecord) -> None:
        raise AssertionError("stateless")


class Counter:
    """Counts records per key; the count is both the output and the changelog value."""

    def __init__(self, settings: CommonSettings) -> None:
        self.out = topics.name(settings, "fee.unique")
        self.changelog = topics.name(settings, "dedup.changelog")
        self.counts: dict[bytes, int] = {}

    def process(self, record: ConsumerRecord) -> list[Record]:
        n = self.counts.get(record.key, 0) + 1
        self.counts[record.key] = n
        value = struct.pack(">I", n)
        return [Record(self.out, record.key, value, []), Record(self.changelog, record.key, value, [])]

    def restore(self, record: ConsumerRecord) -> None:
        self.counts[record.key] = struct.unpack(">I", record.value)[0]


def shell_stage(settings: CommonSettings, make_core: Callable[[int], Core], changelog: bool = False) -> Stage:
    return Stage("shelltest", topics.name(settings, "fee.raw"), make_core, topics.name(settings, "deadletter"),
                 topics.name(settings, "dedup.changelog") if changelog else None)


@contextlib.asynccontextmanager
async def running(settings: CommonSettings, stage: Stage) -> AsyncIterator[asyncio.Task[None]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)  # returns (no exception) = clean stop


async def test_passthrough_commits_outputs_and_offsets(settings: CommonSettings) -> None:
    records = [(f"k{i}".encode(), orjson.dumps({"i": i}), [("ce_id", str(i).encode())]) for i in range(300)]
    await produce(settings, "fee.raw", records)
    stage = shell_stage(settings, lambda _: Passthrough(settings))
    records_in_before = REGISTRY.get_sample_value("voicecall_stage_records_in_total", {"stage": "shelltest"}) or 0
    async with running(settings, stage):
        out = await read_all(settings, "fee.unique", expect=300, idle=0.5)
        lag = [REGISTRY.get_sample_value("voicecall_stage_consumer_lag", {"stage": "shelltest", "partition": str(p)})
               for p in range(3)]
        assert lag == [0.0, 0.0, 0.0]
    records_in = REGISTRY.get_sample_value("voicecall_stage_records_in_total", {"stage": "shelltest"})
    assert records_in == records_in_before + 300
    assert sorted(orjson.loads(r.value)["i"] for r in out) == list(range(300))
    assert all(r.key == f"k{orjson.loads(r.value)['i']}".encode() for r in out)
    assert all(dict(r.headers)["ce_id"] == str(orjson.loads(r.value)["i"]).encode() for r in out)
    offsets = await committed_offsets(settings, kafka.group_id(settings, "shelltest"), "fee.raw")
    assert sum(o or 0 for o in offsets.values()) == 300


async def test_raising_core_deadletters_and_keeps_going(settings: CommonSettings) -> None:
    await produce(settings, "fee.raw", [(b"a", b"1", []), (b"a", b"boom", []), (b"a", b"2", [])], partition=0)
    stage = shell_stage(settings, lambda _: Passthrough(settings))
    async with running(settings, stage) as task:
        out = await read_all(settings, "fee.unique", expect=2, idle=0.3)
        dead = await read_all(settings, "deadletter", expect=1, idle=0.3)
        assert not task.done()
    assert [r.value for r in out] == [b"1", b"2"]
    assert len(dead) == 1
    value: dict[str, Any] = orjson.loads(dead[0].value)
    assert value["reason"] == "processing-error" and value["stage"] == "shelltest"
    assert value["origin"] == {"topic": topics.name(settings, "fee.raw"), "partition": 0, "offset": 1}
    assert value["payload"] == "boom" and value["detail"] == "ValueError: boom"
    assert dict(dead[0].headers)["ce_type"] == b"voicecall.deadletter"


async def test_state_is_restored_from_the_changelog(settings: CommonSettings) -> None:
    cores: dict[int, Counter] = {}

    def make(partition: int) -> Core:
        cores[partition] = Counter(settings)
        return cores[partition]

    stage = shell_stage(settings, make, changelog=True)
    await produce(settings, "fee.raw", [(b"x", b"", [])] * 5, partition=1)
    async with running(settings, stage):
        first = await read_all(settings, "fee.unique", expect=5, idle=0.3)
    assert [struct.unpack(">I", r.value)[0] for r in first] == [1, 2, 3, 4, 5]
    await produce(settings, "fee.raw", [(b"x", b"", [])] * 2, partition=1)
    cores.clear()
    async with running(settings, stage):
        assert cores[1].counts == {b"x": 5}  # restored before anything new was processed
        both = await read_all(settings, "fee.unique", expect=7, idle=0.3)
    assert [struct.unpack(">I", r.value)[0] for r in both] == [1, 2, 3, 4, 5, 6, 7]
    changelog = await read_all(settings, "dedup.changelog", expect=7, idle=0.3)
    assert {r.partition for r in changelog} == {1}  # the input's partition number


async def test_changelog_with_too_few_partitions_holds_those_partitions_without_crashing(
        fresh_settings: CommonSettings) -> None:
    from aiokafka.admin import NewTopic

    settings = fresh_settings
    admin = kafka.make_admin(settings)
    await admin.start()
    try:  # the changelog first, with one partition for the input's three (an operator's mistake)
        await admin.create_topics([NewTopic(topics.name(settings, "dedup.changelog"), 1, 1,
                                            topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    await topics.create(settings)  # the other topics; an existing topic's partitions are never changed
    stage = shell_stage(settings, lambda _: Counter(settings), changelog=True)
    await produce(settings, "fee.raw", [(b"a", b"", [])], partition=0)
    await produce(settings, "fee.raw", [(b"b", b"", [])], partition=2)
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop))
    try:
        out = await read_all(settings, "fee.unique", expect=1, idle=2.0, timeout=30)
        assert [r.key for r in out] == [b"a"]  # partition 2 waits: its state has nowhere to live
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
