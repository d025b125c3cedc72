"""The shell never loops on one bad record, on a real broker: a changelog record the core cannot decode is skipped at
restore (counted, logged once with where it is) and the partition becomes ready; an output too large for the
producer fails its transaction once, then goes to the deadletter topic as ``too-large`` and the stage moves on."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from kafka_helpers import produce, read_all
from voicecall import topics
from voicecall.runtime import deadletter
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.stage import Core, Record, Stage, oversize, run_stage

STAGE = "badrecords"


class Counter:
    """Counts records per key; the count (4 bytes) is the output and the changelog value."""

    def __init__(self, settings: CommonSettings) -> None:
        self.out = topics.name(settings, "fee.unique")
        self.changelog = topics.name(settings, "dedup.changelog")
        self.counts: dict[bytes, int] = {}

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        if record.value == b"big":  # an output over the producer's limit
            return [Record(self.out, record.key, b"x" * (oversize.LIMIT + 1), [])]
        n = self.counts.get(record.key, 0) + 1
        self.counts[record.key] = n
        value = struct.pack(">I", n)
        return [Record(self.out, record.key, value, []), Record(self.changelog, record.key, value, [])]

    def restore(self, record: ConsumerRecord[Any, Any]) -> None:
        (self.counts[record.key],) = struct.unpack(">I", record.value)  # struct.error on any other size


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": STAGE}) or 0.0


@contextlib.asynccontextmanager
async def running(settings: CommonSettings, cores: dict[int, Counter]) -> AsyncIterator[asyncio.Task[None]]:
    def make(partition: int) -> Core:
        cores[partition] = Counter(settings)
        return cores[partition]

    stage = Stage(STAGE, topics.name(settings, "fee.raw"), make, topics.name(settings, "deadletter"),
                  topics.name(settings, "dedup.changelog"))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_a_changelog_record_the_core_cannot_decode_is_skipped_counted_and_logged(
        settings: CommonSettings) -> None:
    cores: dict[int, Counter] = {}
    await produce(settings, "fee.raw", [(b"a", b"", [])] * 3, partition=1)
    async with running(settings, cores):
        await read_all(settings, "fee.unique", expect=3, idle=0.3)
    # Foreign records in the changelog, as a copy from another topic leaves them: wrong sizes, no value at all.
    foreign = [(b"call-1", orjson.dumps({"sessionId": "call-1"}), []), (b"b", b"\x00" * 12, [])]
    await produce(settings, "dedup.changelog", foreign, partition=1)
    await produce(settings, "dedup.changelog", [(b"c", b"", [])], partition=2)
    await produce(settings, "fee.raw", [(b"a", b"", [])], partition=1)
    where = sorted((r.partition, r.offset) for r in await read_all(settings, "dedup.changelog", expect=6, idle=0.3)
                   if r.key != b"a")
    assert len(where) == 3
    errors_before, restored_before = sample("voicecall_stage_restore_errors_total"), sample(
        "voicecall_stage_restored_records_total")
    with capture_logs() as logs:
        async with running(settings, cores) as task:  # ready: no partition is held back by the bad records
            assert cores[1].counts == {b"a": 3}  # everything it wrote came back
            out = await read_all(settings, "fee.unique", expect=4, idle=0.3)
            assert not task.done()
    assert [struct.unpack(">I", r.value)[0] for r in out] == [1, 2, 3, 4]  # carried on from the restored state
    assert sample("voicecall_stage_restore_errors_total") == errors_before + 3
    assert sample("voicecall_stage_restored_records_total") == restored_before + 3
    skipped = [e for e in logs if e["event"] == "changelog record skipped: the core cannot apply it"]
    assert sorted((e["partition"], e["offset"]) for e in skipped) == where
    assert all(e["log_level"] == "error" and "struct.error" in e["error"] for e in skipped)
    assert [(e["key"], e["key_bytes"]) for e in skipped if e["partition"] == 1] == [("call-1", 6), ("b", 1)]
    summary = [e for e in logs if e["event"] == "changelog records skipped during restore"]
    assert [e["skipped"] for e in summary] == [3]
    assert not [e for e in logs if e["event"] == "prepare failed"]


async def test_an_output_too_large_to_produce_is_deadlettered_after_one_failed_transaction(
        settings: CommonSettings) -> None:
    await produce(settings, "fee.raw", [(b"a", b"", []), (b"a", b"big", []), (b"a", b"", [])], partition=0)
    aborts_before, errors_before = sample("voicecall_stage_transaction_aborts_total"), sample(
        "voicecall_stage_process_errors_total")
    with capture_logs() as logs:
        async with running(settings, {}) as task:
            out = await read_all(settings, "fee.unique", expect=2, idle=0.5)
            dead = await read_all(settings, "deadletter", expect=1, idle=0.3)
            assert not task.done()
    assert [struct.unpack(">I", r.value)[0] for r in out] == [1, 2]
    assert len(dead) == 1
    value = orjson.loads(dead[0].value)
    assert value["reason"] == "too-large" and value["stage"] == STAGE
    assert value["origin"] == {"topic": topics.name(settings, "fee.raw"), "partition": 0, "offset": 1}
    assert f"over the producer's limit of {oversize.LIMIT}" in value["detail"]
    assert sample("voicecall_stage_transaction_aborts_total") == aborts_before + 1  # one try, not a loop
    assert sample("voicecall_stage_process_errors_total") == errors_before + 1
    assert len([e for e in logs if e["event"] == "output too large, deadlettered"]) == 1


def test_fit_cuts_the_key_of_a_deadletter_record_so_that_it_fits() -> None:
    record = ConsumerRecord("in", 0, 7, 0, 0, b"k" * (oversize.LIMIT - 100), b"v", None, 0, 0, [])
    small = Record("out", b"s", b"ok", [])
    fitted, replaced = oversize.fit(record, [small, Record("out", b"s", b"x" * oversize.LIMIT, [])], "st", "dl",
                                    max_payload=512 * 1024)
    assert replaced == 1 and fitted[0] is small
    dead = fitted[1]
    assert dead.topic == "dl" and dead.key == b"k" * deadletter.MAX_KEY and oversize.size(dead) <= oversize.LIMIT
    assert orjson.loads(fitted[1].value)["origin"] == {"topic": "in", "partition": 0, "offset": 7}
