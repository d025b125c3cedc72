"""`voicecall replay reset`: dry-run plan, committed offsets at the first record at/after T, refusal while active."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from replay_helpers import Area, fee_headers, fee_value

from voicecall.replay import reset as replay_reset
from voicecall.runtime import times
from voicecall.runtime.kafka import group_id, make_consumer, make_transactional_producer


def test_plan_uses_end_offset_when_nothing_is_that_recent() -> None:
    rows = replay_reset.plan([1, 0], committed={0: 7, 1: None}, found={0: 3, 1: None}, ends={0: 10, 1: 4})
    assert [(r.partition, r.current, r.new, r.to_reprocess) for r in rows] == [(0, 7, 3, 7), (1, None, 4, 0)]
    text = replay_reset.format_plan("t.fee.unique", "t.billing", 0, rows)
    # Not counted: partition 0's 7 offsets are an upper bound, partition 1 has nothing to reprocess for sure.
    assert plan_rows(text) == {0: ("7", "3", "10", "<=7"), 1: ("-", "4", "4", "0")}
    assert "total to reprocess: at most 7 records" in text
    counted = [replace(rows[0], records=5), rows[1]]
    text = replay_reset.format_plan("t.fee.unique", "t.billing", 0, counted)
    assert plan_rows(text)[0] == ("7", "3", "10", "5")
    assert "total to reprocess: 5 records" in text


def plan_rows(text: str) -> dict[int, tuple[str, ...]]:
    """The table of a printed plan: partition -> (current, new, end, to reprocess)."""
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[0].isdigit():
            rows[int(cells[0])] = tuple(cells[1:])
    return rows


def test_members_of_reads_describe_groups_tuples() -> None:
    response = SimpleNamespace(groups=[
        (0, "g", "Stable", "consumer", "range", [("m-1", "voicecall-g", "/127.0.0.1", b"", b"")]),
        (0, "other", "Stable", "consumer", "range", [("m-2", "x", "/h", b"", b"")])])
    members = replay_reset.members_of([response], "g")
    assert members == [replay_reset.Member("m-1", "voicecall-g", "/127.0.0.1")]
    assert "kubectl scale deployment/voicecall-billing --replicas=0" in replay_reset.refusal("billing", "g", members)


async def produce_window(area: Area, producer: Any, count: int, base: int) -> None:
    for n in range(count):
        sid = f"s{n:02d}"
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                     partition=n % 3, timestamp_ms=base + n * 1000, headers=fee_headers(sid))


async def consume_all_and_commit(area: Area, service: str, count: int) -> None:
    """What a running service does: consume everything, commit, leave the group."""
    consumer = make_consumer(area.settings, area.topic("fee.unique"), group_id=group_id(area.settings, service))
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < count and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500)
            seen += sum(len(batch) for batch in fetched.values())
        await consumer.commit()
        assert seen == count
    finally:
        await consumer.stop()


async def committed(area: Area, service: str) -> dict[int, int | None]:
    consumer = make_consumer(area.settings, group_id=group_id(area.settings, service))
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(area.topic("fee.unique"), p)) for p in range(3)}
    finally:
        await consumer.stop()


async def test_reset_dry_run_then_commit(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 3600) * 1000
    await produce_window(area, producer, 12, base)  # partition p holds numbers p, p+3, p+6, p+9
    await consume_all_and_commit(area, "billing", 12)
    assert await committed(area, "billing") == {0: 4, 1: 4, 2: 4}

    since = base + 5000  # numbers 5..11 are at/after T: partition 0 from offset 2 (6), 1 from 2 (7), 2 from 1 (5)
    out = io.StringIO()
    assert await replay_reset.reset(area.settings, "billing", since, dry_run=True, out=out) == 0
    text = out.getvalue()
    assert plan_rows(text) == {0: ("4", "2", "4", "2"), 1: ("4", "2", "4", "2"), 2: ("4", "1", "4", "3")}
    assert "total to reprocess: 7 records" in text and "dry run: nothing committed" in text
    assert await committed(area, "billing") == {0: 4, 1: 4, 2: 4}

    out = io.StringIO()
    assert await replay_reset.reset(area.settings, "billing", since, dry_run=False, out=out) == 0
    assert await committed(area, "billing") == {0: 2, 1: 2, 2: 1}
    # recordings shares fee.unique but has its own group: untouched.
    assert await committed(area, "recordings") == {0: None, 1: None, 2: None}

    # A time after every record: each partition goes to its end (nothing to reprocess).
    out = io.StringIO()
    assert await replay_reset.reset(area.settings, "billing", base + 3_600_000, dry_run=False, out=out) == 0
    assert await committed(area, "billing") == {0: 4, 1: 4, 2: 4}
    assert "total to reprocess: 0 records" in out.getvalue()


async def test_reset_refuses_while_the_group_is_active(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 3600) * 1000
    await produce_window(area, producer, 6, base)
    running = make_consumer(area.settings, area.topic("fee.raw"), group_id=group_id(area.settings, "dedup"))
    await running.start()
    try:
        await running.getmany(timeout_ms=2000)  # joins the group and gets its assignment
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicecall", "replay", "reset", "--service", "dedup", "--from",
            times.iso_ms(base), env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == replay_reset.EXIT_ACTIVE, (out, err)
        assert "refusing to reset" in err.decode() and "--replicas=0" in err.decode()
        assert "committed new offsets" not in out.decode()
    finally:
        await running.stop()
    # Once the service has stopped, the same command goes through.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "reset", "--service", "dedup", "--from", times.iso_ms(base),
        "--dry-run", env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "total to reprocess: 0 records" in out.decode()  # fee.raw is empty


async def test_dry_run_counts_records_not_transaction_markers(area: Area) -> None:
    """fee.unique is written in transactions: each one adds a marker offset, which is not a record to reprocess."""
    base = (int(time.time()) - 3600) * 1000
    producer = make_transactional_producer(area.settings, f"test-reset-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        for n in range(6):  # one record per transaction, as a lightly loaded dedup writes them
            sid = f"s{n}"
            async with producer.transaction():
                await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                             partition=0, timestamp_ms=base + n * 1000, headers=fee_headers(sid))
        await producer.begin_transaction()  # an aborted one: its record is never delivered to billing
        await producer.send_and_wait(area.topic("fee.unique"), fee_value("gone", 9), key=b"gone", partition=0,
                                     timestamp_ms=base + 9000, headers=fee_headers("gone"))
        await producer.abort_transaction()
    finally:
        await producer.stop()
    out = io.StringIO()
    assert await replay_reset.reset(area.settings, "billing", base + 2000, dry_run=True, out=out) == 0
    rows = plan_rows(out.getvalue())
    # s2..s5 remain: offsets 4, 6, 8, 10 (markers between them), the aborted record and its marker at 12 and 13.
    assert rows[0] == ("-", "4", "14", "4"), out.getvalue()
    assert "total to reprocess: 4 records" in out.getvalue()
