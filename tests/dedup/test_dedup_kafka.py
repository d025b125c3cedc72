"""``voicecall dedup`` on a real broker: re-pushes, duplicates in one push, conflicts, expiry, and two instances
sharing the group while one of them stops and starts again."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
from dedup_helpers import DedupSettings, cdr, fee_record, produce, read_all
from prometheus_client import REGISTRY

from voicecall import topics
from voicecall.dedup import cli, core as dedup
from voicecall.runtime.kafka import make_transactional_producer
from voicecall.runtime.stage import run_stage


@contextlib.asynccontextmanager
async def dedup_running(settings: DedupSettings) -> AsyncIterator[asyncio.Task[None]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, cli.stage(settings), stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def session_ids(records: list[object]) -> list[str]:
    return [orjson.loads(r.value)["sessionId"] for r in records]  # type: ignore[attr-defined]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


METRICS = {  # the list: records in, unique out, duplicates, conflicts, restore time, transaction latency
    "in": ("voicecall_stage_records_in_total", {"stage": "dedup"}),
    "unique": ("voicecall_dedup_unique_total", {}),
    "unique_committed": ("voicecall_stage_records_out_total", {"stage": "dedup", "topic": "fee.unique"}),
    "duplicates": ("voicecall_dedup_duplicates_total", {}),
    "conflicts": ("voicecall_dedup_conflicts_total", {}),
    "missing_id": ("voicecall_dedup_rejected_total", {"reason": "missing-session-id"}),
    "restores": ("voicecall_stage_restore_seconds_count", {"stage": "dedup"}),
    "transactions": ("voicecall_stage_transaction_seconds_count", {"stage": "dedup"}),
}


def metrics(settings: DedupSettings) -> dict[str, float]:
    result = {}
    for what, (name, labels) in METRICS.items():
        if "topic" in labels:
            labels = {**labels, "topic": topics.name(settings, labels["topic"])}
        result[what] = sample(name, **labels)
    return result


async def test_seven_pushes_at_different_moments_give_one(settings: DedupSettings) -> None:
    duplicates_before = REGISTRY.get_sample_value("voicecall_dedup_duplicates_total") or 0.0
    doc = cdr(1)
    async with dedup_running(settings):
        for _ in range(3):
            await produce(settings, "fee.raw", [fee_record(doc)])
            await asyncio.sleep(0.3)
    async with dedup_running(settings):  # a restart in between: the state comes back from the changelog
        for i in range(4):
            # the platform's re-pushes may differ in whitespace inside times
            again = dict(doc, callEndTime=doc["callEndTime"].replace(" ", "  ")) if i % 2 else doc
            await produce(settings, "fee.raw", [fee_record(again)])
            await asyncio.sleep(0.3)
        unique = await read_all(settings, "fee.unique", expect=1, idle=1.0)
    raw = await read_all(settings, "fee.raw", expect=7, idle=0.2)
    assert len(raw) == 7
    assert session_ids(unique) == [doc["sessionId"]]
    assert unique[0].value == raw[0].value and unique[0].headers == raw[0].headers  # unchanged, ce_id kept
    assert (REGISTRY.get_sample_value("voicecall_dedup_duplicates_total") or 0.0) - duplicates_before == 6
    assert await read_all(settings, "deadletter", idle=0.2) == []


async def test_two_identical_records_in_one_push_give_one(settings: DedupSettings) -> None:
    doc = cdr(2)
    await produce(settings, "fee.raw", [fee_record(doc), fee_record(doc), fee_record(cdr(3))])
    async with dedup_running(settings):
        unique = await read_all(settings, "fee.unique", expect=2, idle=1.0)
    assert sorted(session_ids(unique)) == sorted([doc["sessionId"], cdr(3)["sessionId"]])


async def test_conflicting_duplicate_gives_one_unique_and_one_deadletter(settings: DedupSettings) -> None:
    first, later = cdr(4), cdr(4, end="2026-11-23 10:00:07")
    await produce(settings, "fee.raw", [fee_record(first), fee_record(later), fee_record({"callEndTime": "x"}),
                                        fee_record(first)])
    before = metrics(settings)
    async with dedup_running(settings):
        unique = await read_all(settings, "fee.unique", expect=1, idle=1.0)
        dead = await read_all(settings, "deadletter", expect=2, idle=0.5)
        state_keys, state_bytes = sample("voicecall_dedup_state_keys"), sample("voicecall_dedup_state_bytes")
        lag = [sample("voicecall_stage_consumer_lag", stage="dedup", partition=str(p)) for p in range(3)]
    after = metrics(settings)
    delta = {what: after[what] - before[what] for what in METRICS}
    assert delta == {"in": 4, "unique": 1, "unique_committed": 1, "duplicates": 1, "conflicts": 1, "missing_id": 1,
                     "restores": delta["restores"], "transactions": delta["transactions"]}
    assert delta["restores"] >= 1 and delta["transactions"] >= 1
    assert state_keys >= 1 and state_bytes >= 3 * 1024 * 20  # three partitions' tables of at least 1024 slots
    assert lag == [0.0, 0.0, 0.0]
    assert [orjson.loads(r.value) for r in unique] == [first]
    reasons = sorted(orjson.loads(r.value)["reason"] for r in dead)
    assert reasons == ["conflicting-duplicate", "missing-session-id"]
    conflict = next(orjson.loads(r.value) for r in dead if b"conflicting" in r.value)
    assert conflict["payload"] == later and conflict["stage"] == "dedup"
    assert conflict["fingerprints"] == {"first": f"{dedup.fingerprint(first):016x}",
                                        "later": f"{dedup.fingerprint(later):016x}"}


async def test_aborted_records_in_fee_raw_and_in_the_changelog_are_never_seen(settings: DedupSettings) -> None:
    """read_committed on both reads: an aborted fee.raw record is not deduplicated into fee.unique, and an aborted
    changelog entry is not restored (else the CDR it names would be dropped as a duplicate)."""
    aborted, named, plain = cdr(600), cdr(601), cdr(602)
    producer = make_transactional_producer(settings, f"{settings.topic_prefix}test-aborter")
    await producer.start()
    try:
        await producer.begin_transaction()
        key, value, headers = fee_record(aborted)
        await (await producer.send(topics.name(settings, "fee.raw"), value=value, key=key, headers=headers,
                                   partition=0))
        moment = dedup.epoch_seconds(named["callEndTime"])
        assert moment is not None
        await (await producer.send(topics.name(settings, "dedup.changelog"),
                                   key=dedup.id_hash(named["sessionId"]).to_bytes(8, "big"),
                                   value=dedup.encode_entry(dedup.fingerprint(named), moment), partition=0))
        await producer.abort_transaction()
    finally:
        await producer.stop()
    await produce(settings, "fee.raw", [fee_record(named), fee_record(plain)], partition=0)
    async with dedup_running(settings):
        unique = await read_all(settings, "fee.unique", expect=2, idle=1.0)
    assert sorted(session_ids(unique)) == sorted([named["sessionId"], plain["sessionId"]])


async def test_expired_entry_passes_again_and_leaves_a_tombstone(kafka_bootstrap: str,
                                                                 settings: DedupSettings) -> None:
    settings = settings.model_copy(update={"dedup_window": 60.0})
    now = datetime.now(UTC).replace(microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S"
    old = cdr(5, end=(now - timedelta(seconds=100)).strftime(fmt))
    await produce(settings, "fee.raw", [fee_record(old)], partition=0)
    async with dedup_running(settings):
        await read_all(settings, "fee.unique", expect=1, idle=0.3)
        # Newer calls on the same partition move the window's clock on; the sweep comes round the small table.
        fresh = [fee_record(cdr(100 + i, end=now.strftime(fmt))) for i in range(40)]
        await produce(settings, "fee.raw", fresh, partition=0)
        await read_all(settings, "fee.unique", expect=41, idle=0.3)
        await produce(settings, "fee.raw", [fee_record(old)], partition=0)
        unique = await read_all(settings, "fee.unique", expect=42, idle=1.0)
    assert Counter(session_ids(unique))[old["sessionId"]] == 2
    changelog = await read_all(settings, "dedup.changelog", idle=0.3)
    old_key = dedup.id_hash(old["sessionId"]).to_bytes(8, "big")
    assert [r.value for r in changelog if r.key == old_key] == [changelog[0].value, None]
    assert sum(1 for r in changelog if r.value is None) == 1  # only the expired key was tombstoned


async def test_two_instances_with_one_stopped_and_started_during_the_feed(settings: DedupSettings) -> None:
    rng = random.Random(5)
    docs = [cdr(1000 + i) for i in range(2000)]
    feed = [*docs, *rng.choices(docs, k=800)]
    rng.shuffle(feed)
    chunks = [feed[i:i + 100] for i in range(0, len(feed), 100)]
    async with dedup_running(settings):
        stop_b, ready_b = asyncio.Event(), asyncio.Event()
        b = asyncio.create_task(run_stage(settings, cli.stage(settings), stop_b, ready=ready_b))
        await asyncio.wait_for(ready_b.wait(), 60)
        for n, chunk in enumerate(chunks):
            await produce(settings, "fee.raw", [fee_record(d) for d in chunk])
            await asyncio.sleep(0.1)
            if n == 8:
                stop_b.set()
                await asyncio.wait_for(b, 60)
            if n == 18:
                stop_b, ready_b = asyncio.Event(), asyncio.Event()
                b = asyncio.create_task(run_stage(settings, cli.stage(settings), stop_b, ready=ready_b))
        unique = await read_all(settings, "fee.unique", expect=2000, idle=1.5, timeout=90)
        stop_b.set()
        await asyncio.wait_for(b, 60)
    ids = session_ids(unique)
    assert len(ids) == len(set(ids)) == 2000
    assert set(ids) == {d["sessionId"] for d in docs}
    # keyed like the input: fee.unique partition = fee.raw partition (aiokafka's default partitioner there)
    raw = {orjson.loads(r.value)["sessionId"]: r.partition
           for r in await read_all(settings, "fee.raw", expect=len(feed), idle=0.2)}
    assert all(r.partition == raw[orjson.loads(r.value)["sessionId"]] for r in unique)
    assert len({r.partition for r in unique}) == 3


async def test_fenced_producer_aborts_and_the_partition_is_prepared_again(settings: DedupSettings) -> None:
    """A zombie-style takeover: another producer initialises partition 0's transactional id. The stage's next
    transaction on it fails (fenced), is thrown away with its in-memory state, and the partition comes back from
    the changelog and the committed offset — nothing lost, nothing twice."""
    from voicecall.runtime.kafka import group_id

    def fenced() -> float:
        return REGISTRY.get_sample_value("voicecall_stage_fenced_total", {"stage": "dedup"}) or 0.0

    before = fenced()
    first = [cdr(3000 + i) for i in range(50)]
    second = [cdr(3100 + i) for i in range(50)]
    async with dedup_running(settings):
        await produce(settings, "fee.raw", [fee_record(d) for d in first], partition=0)
        await read_all(settings, "fee.unique", expect=50, idle=0.3)
        txid = f"{group_id(settings, 'dedup')}-{settings.topic_prefix}fee.raw-0"
        usurper = make_transactional_producer(settings, txid)
        await usurper.start()
        await usurper.begin_transaction()
        await usurper.commit_transaction()  # InitProducerId done: the stage's producer is fenced
        await usurper.stop()
        await produce(settings, "fee.raw", [fee_record(d) for d in [*second, *first[:10], *second[:10]]],
                      partition=0)
        unique = await read_all(settings, "fee.unique", expect=100, idle=1.0, timeout=60)
    assert fenced() > before
    ids = session_ids(unique)
    assert len(ids) == len(set(ids)) == 100
