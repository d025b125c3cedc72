"""``voicecall calls`` on the real broker: the record after each kind of input, inputs out of order and twice, a
missing CDR found and later completed, retention, two instances with rebalances, and inputs that are not
co-partitioned."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka.admin import NewTopic
from calls_helpers import (
    KafkaCallsSettings,
    Raw,
    calls,
    core,
    env_for,
    fee_unique,
    feed,
    finals,
    inputs_of,
    produce_raws,
    references,
)
from prometheus_client import REGISTRY

from contract_helpers import validate_records
from kafka_helpers import PARTITIONS, committed_offsets, read_all
from voicecall import topics
from voicecall.calls.cli import stage
from voicecall.replay import reset as replay_reset
from voicecall.runtime import cloudevents, kafka
from voicecall.runtime.partition import partitioner
from voicecall.runtime.stage import InputsMismatch, run_stage


@contextlib.asynccontextmanager
async def running(settings: KafkaCallsSettings) -> AsyncIterator[asyncio.Task[None]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage(settings), stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)  # returns (no exception) = clean stop


class Reader:
    """Reads the calls topic (read_committed) as records arrive."""

    def __init__(self, settings: KafkaCallsSettings) -> None:
        self.consumer = kafka.make_consumer(settings, group_id=None)
        self.topic = topics.name(settings, "calls")
        self.seen: list[Any] = []

    async def __aenter__(self) -> Reader:
        from aiokafka import TopicPartition

        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def until(self, count: int, timeout: float = 30.0) -> list[Any]:
        """Every record read so far, once there are at least ``count``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.seen) < count:
            assert loop.time() < deadline, f"{len(self.seen)} of {count} calls records"
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                self.seen.extend(records)
        return self.seen

    async def drain(self, seconds: float = 1.0) -> list[Any]:
        """Every record read so far, after reading on for ``seconds`` (a record too many would show)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                self.seen.extend(records)
        return self.seen


def value(out: Any) -> dict[str, Any]:
    return orjson.loads(out.value)  # type: ignore[no-any-return]


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_record_after_each_kind_of_input(settings: KafkaCallsSettings) -> None:
    call = next(c for c in calls(200, seed=2) if c.scenario == "callback" and c.recording is not None)
    raws = inputs_of(call)
    failed = ("recording.failed", call.session_id.encode(),
              orjson.dumps({"sessionId": call.session_id, "reason": "not-found", "attempts": 3}),
              cloudevents.headers(cloudevents.TYPE_RECORDING_FAILED, "/voicecall/recordings"))
    expected = core()
    async with running(settings), Reader(settings) as reader:
        for count, raw in enumerate([*raws, failed], start=1):
            await produce_raws(settings, [raw])
            out = (await reader.until(count))[-1]
            (want,) = feed(expected, [raw])
            assert out.value == want.value, raw[0]  # the same record as the pure core's, byte for byte
            assert dict(out.headers)["ce_id"] == dict(want.headers)["ce_id"]
    states = [value(r)["state"] for r in reader.seen]
    assert states == [*["initiated", "ringing", "answered", "answered", "answered", "answered"],
                      *["ended"] * (len(raws) + 1 - 6)]
    assert [value(r)["cdr"]["status"] for r in reader.seen[-4:]] == ["received"] * 4
    assert [value(r)["complete"] for r in reader.seen[-4:]] == [False, False, True, True]
    assert value(reader.seen[-1])["recording"] == {"status": "failed", "reason": "not-found"}
    # co-partitioned: the call's record is in the partition number of its inputs
    assert {r.partition for r in reader.seen} == {partitioner(call.session_id.encode(), [0, 1, 2], [0, 1, 2])}


def shuffled_with_repeats(raws: list[Raw], rng: random.Random) -> list[Raw]:
    fed = raws + rng.sample(raws, k=len(raws) // 3)
    rng.shuffle(fed)
    return fed


async def test_out_of_order_and_repeated_inputs(settings: KafkaCallsSettings) -> None:
    rng = random.Random(5)
    raws_per_call = [inputs_of(c) for c in calls(60, seed=9)]
    fed = shuffled_with_repeats([raw for raws in raws_per_call for raw in raws], rng)
    distinct = sum(len(raws) for raws in raws_per_call)
    async with running(settings), Reader(settings) as reader:
        await produce_raws(settings, fed)
        await reader.until(distinct)
        await reader.drain()
    assert len(reader.seen) == distinct  # each distinct input changed its call once; repeats changed nothing
    assert finals(reader.seen) == references(raw for raws in raws_per_call for raw in raws)
    assert await read_all(settings, "deadletter", idle=0.2) == []
    assert validate_records(reader.seen, prefix=settings.topic_prefix) == distinct  # schemas/call.schema.json


def ending_at(scenario: str, end: datetime, seed: int) -> Any:
    """A simulated call of ``scenario`` whose disconnect is at ``end`` (the same call, moved in time)."""
    first = next(c for c in calls(50, seed=seed) if c.scenario == scenario)
    start = end - timedelta(seconds=first.end - first.start)
    return calls(first.index + 1, seed=seed, start=start)[first.index]


async def test_a_missing_cdr_is_flagged_and_a_late_cdr_completes_the_call(fresh_settings: KafkaCallsSettings
                                                                          ) -> None:
    settings = fresh_settings.model_copy(update={"calls_cdr_grace": 20.0, "calls_timer_interval": 0.3})
    await topics.create(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    fine = ending_at("callback", now - timedelta(minutes=5), seed=4)  # its CDR came late, but before its disconnect
    lost = ending_at("notify", now - timedelta(minutes=5), seed=3)  # its CDR never came
    missing_before = metric("voicecall_calls_cdr_missing_total")
    late_before = metric("voicecall_calls_cdr_late_total")
    async with running(settings), Reader(settings) as reader:
        # The CDR (and the rest) first: with them together, a tick between the disconnect and the CDR, on two
        # topics read apart, would flag the call whose CDR did come (seen once in a loaded CI run).
        await produce_raws(settings, inputs_of(fine)[len(fine.status):])
        await produce_raws(settings, inputs_of(fine, cdr=False))
        assert value((await reader.until(len(inputs_of(fine))))[-1])["complete"] is True
        await produce_raws(settings, inputs_of(lost, cdr=False))
        flagged = len(inputs_of(fine)) + len(lost.status) + 1
        missing = value((await reader.until(flagged, timeout=30))[-1])
        assert missing["sessionId"] == lost.session_id and missing["cdr"]["status"] == "missing"
        assert missing["cdr"]["since"] == datetime.fromtimestamp(lost.end_second + 20, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        assert metric("voicecall_calls_cdr_missing_total") == missing_before + 1
        await produce_raws(settings, [fee_unique(lost)])  # the CDR after all
        completed = value((await reader.until(flagged + 1))[-1])
        assert completed["cdr"]["status"] == "received" and completed["cdr"]["callEndTime"] == completed["endedAt"]
        assert metric("voicecall_calls_cdr_late_total") == late_before + 1
        assert len(await reader.drain()) == flagged + 1  # the timer fired once
    assert all(value(r)["cdr"]["status"] != "missing" for r in reader.seen if r.key == fine.session_id.encode())


async def test_a_call_leaves_after_the_retention(fresh_settings: KafkaCallsSettings) -> None:
    settings = fresh_settings.model_copy(update={"calls_retention": 6.0, "calls_timer_interval": 0.3})
    await topics.create(settings)
    call = ending_at("verify", datetime.now(UTC), seed=6)  # leaves 6 s from now
    raws = inputs_of(call)
    async with running(settings), Reader(settings) as reader:
        await produce_raws(settings, raws)
        assert value((await reader.until(len(raws)))[-1])["complete"] is True
        seen = await reader.until(len(raws) + 1, timeout=30)
        assert seen[-1].value is None and seen[-1].key == call.session_id.encode() and seen[-1].headers == ()
        assert validate_records(seen, prefix=settings.topic_prefix) == len(seen)  # a tombstone fits too
        assert metric("voicecall_calls_state_calls") == 0
    # Restored without it: a new input starts a new record with only that input (and, as old as it is, leaves
    # again at the next tick).
    async with running(settings), Reader(settings) as reader:
        await produce_raws(settings, [fee_unique(call)])
        fresh = value((await reader.until(len(raws) + 2))[len(raws) + 1])
        assert fresh["events"] == [] and fresh["cdr"]["status"] == "received" and "billing" not in fresh


async def test_two_instances_with_rebalances_in_the_middle(settings: KafkaCallsSettings) -> None:
    rng = random.Random(8)
    raws_per_call = [inputs_of(c) for c in calls(500, seed=12)]
    fed = shuffled_with_repeats([raw for raws in raws_per_call for raw in raws], rng)
    distinct = sum(len(raws) for raws in raws_per_call)
    thirds = [fed[i * len(fed) // 3:(i + 1) * len(fed) // 3] for i in range(3)]
    stops = [asyncio.Event(), asyncio.Event()]
    readies = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(run_stage(settings, stage(settings), stops[0], ready=readies[0]))]
    try:
        await asyncio.wait_for(readies[0].wait(), 60)
        await produce_raws(settings, thirds[0])
        tasks.append(asyncio.create_task(run_stage(settings, stage(settings), stops[1], ready=readies[1])))
        await produce_raws(settings, thirds[1])  # while the group rebalances onto two members
        await asyncio.wait_for(readies[1].wait(), 60)
        stops[0].set()  # the first leaves while the last third arrives: its partitions move to the second
        await produce_raws(settings, thirds[2])
        await asyncio.wait_for(tasks[0], 60)
        async with Reader(settings) as reader:
            await reader.until(distinct, timeout=60)
            await reader.drain()
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert len(reader.seen) == distinct
    assert finals(reader.seen) == references(raw for raws in raws_per_call for raw in raws)
    offsets = await committed_offsets(settings, kafka.group_id(settings, "calls"), "status.raw")
    assert sum(o or 0 for o in offsets.values()) == sum(1 for raw in fed if raw[0] == "status.raw")


async def test_inputs_with_other_partition_counts_are_refused(fresh_settings: KafkaCallsSettings) -> None:
    settings = fresh_settings
    admin = kafka.make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topics.name(settings, "billing"), 2, 1)])
    finally:
        await admin.close()
    await topics.create(settings)  # the others with 3; an existing topic is left as it is
    try:
        await asyncio.wait_for(run_stage(settings, stage(settings), asyncio.Event()), 30)
    except InputsMismatch as error:
        message = str(error)
    else:
        raise AssertionError("the stage ran")
    assert f"{topics.name(settings, 'billing')} has 2" in message
    assert f"{topics.name(settings, 'status.raw')} has 3" in message
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "calls", env=env_for(settings), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip().splitlines()[-1].startswith("voicecall calls: the input topics must have the same")


async def test_replay_reset_rewinds_every_input_and_reprocessing_adds_nothing(settings: KafkaCallsSettings) -> None:
    raws_per_call = [inputs_of(c) for c in calls(40, seed=14)]
    fed = [raw for raws in raws_per_call for raw in raws]
    async with running(settings), Reader(settings) as reader:
        await produce_raws(settings, fed)
        await reader.until(len(fed))
    group = kafka.group_id(settings, "calls")
    out = io.StringIO()
    assert await replay_reset.reset(settings, "calls", 0, dry_run=False, out=out) == 0
    for suffix in ("status.raw", "fee.unique", "billing", "recording.stored", "recording.failed"):
        assert f"group {group} on {topics.name(settings, suffix)}" in out.getvalue()
        assert set((await committed_offsets(settings, group, suffix)).values()) == {0}, suffix
    async with running(settings), Reader(settings) as reader:
        for _ in range(100):  # until every input is read again
            offsets = await committed_offsets(settings, group, "status.raw")
            if sum(o or 0 for o in offsets.values()) == sum(1 for raw in fed if raw[0] == "status.raw"):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the reprocessing did not finish")
        seen = await reader.drain(1.0)
    assert len(seen) == len(fed)  # the records of the first run only: reprocessing changed no call
    assert finals(seen) == references(fed)
