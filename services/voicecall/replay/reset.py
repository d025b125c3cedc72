"""``voicecall replay reset``: move a service's consumer group back to the first record at or after a time.

The service then reprocesses everything from that time on when it next starts. Offsets are committed for the
group by a consumer that is *assigned* the partitions (it never joins the group), which Kafka accepts only while
the group has no members — so the command first refuses while any member is active.

The new offset of a partition is that of its first record stamped at/after the time (a transaction marker that
``offsets_for_times`` may answer is skipped), or the partition's end when there is none. The plan printed (by
``--dry-run`` and by the reset itself) counts the records from there to the end by reading them
(``read_committed``, so neither markers nor aborted records count) when there are at most :data:`COUNT_LIMIT`
offsets to look at; beyond that it prints the offset span as an upper bound.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

from aiokafka import TopicPartition
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError
from aiokafka.structs import OffsetAndMetadata

from voicecall import topics
from voicecall.replay import names
from voicecall.runtime import times
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import group_id, make_admin, make_consumer

# service → the topic suffix it consumes (the first one, for a service with several)
INPUTS: dict[str, str] = {"dedup": "fee.raw", "billing": "fee.unique", "recordings": "fee.unique",
                          "calls": "status.raw"}
# service → its other inputs: its group is moved on all of them, to the same time
MORE_INPUTS: dict[str, tuple[str, ...]] = {"calls": ("fee.unique", "billing", "recording.stored", "recording.failed")}

EXIT_ACTIVE = 3  # the group has members: nothing was changed


# The plan counts the records to reprocess exactly (by reading them) up to this many offsets in all; beyond it, it
# prints the offset span, an upper bound (transaction markers of fee.unique occupy offsets too).
COUNT_LIMIT = 1_000_000


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    current: int | None  # the group's committed offset; None = nothing committed yet
    new: int
    end: int  # the last stable offset (read_committed high watermark) at planning time
    records: int | None = None  # counted records in [new, end); None = not counted

    @property
    def span(self) -> int:
        """Offsets between the new position and the end: the record count, or more on a transactional topic."""
        return max(0, self.end - self.new)

    @property
    def to_reprocess(self) -> int:
        return self.span if self.records is None else self.records


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str


def plan(partitions: list[int], committed: Mapping[int, int | None], found: Mapping[int, int | None],
         ends: Mapping[int, int]) -> list[PartitionPlan]:
    """Per partition: the first record at/after the time (``found``), or the end offset when none is that recent."""
    result = []
    for partition in sorted(partitions):
        target = found.get(partition)
        end = ends[partition]
        new = end if target is None else target
        # Nothing between the new offset and the end: the count is known without reading.
        result.append(PartitionPlan(partition, committed.get(partition), new, end, 0 if new >= end else None))
    return result


def format_plan(topic: str, group: str, since_ms: int, rows: list[PartitionPlan]) -> str:
    """The plan as a table. Counts prefixed with ``<=`` are offset spans (not counted): upper bounds."""
    lines = [f"group {group} on {topic}, from {times.iso_ms(since_ms)}:",
             f"{'partition':>9}  {'current':>10}  {'new':>10}  {'end':>10}  {'to reprocess':>12}"]
    for row in rows:
        current = "-" if row.current is None else str(row.current)
        count = str(row.records) if row.records is not None else f"<={row.span}"
        lines.append(f"{row.partition:>9}  {current:>10}  {row.new:>10}  {row.end:>10}  {count:>12}")
    total = sum(row.to_reprocess for row in rows)
    if all(row.records is not None for row in rows):
        lines.append(f"total to reprocess: {total} records")
    else:
        lines.append(f"total to reprocess: at most {total} records (offsets from new to end, not counted; "
                     f"transaction markers occupy offsets too)")
    return "\n".join(lines)


async def first_record_at(consumer: Any, tp: TopicPartition, start: int, end: int, since_ms: int) -> int:
    """The offset of the first record (by offset) stamped at/after ``since_ms``, reading from ``start``; ``end``
    when there is none before it.

    ``offsets_for_times`` answers the first *offset* at/after the time, and on a transactional topic that may be a
    transaction marker, which carries the time it was written, not the time of the records before and after it:
    starting there would reprocess records older than the time. Normally the record at ``start`` is the answer and
    this costs one fetch.
    """
    consumer.assign([tp])
    consumer.seek(tp, start)
    position = start
    while position < end:
        fetched = await consumer.getmany(tp, timeout_ms=500, max_records=500)
        for record in fetched.get(tp, ()):
            if record.offset >= end:
                return end
            if record.timestamp >= since_ms:
                return int(record.offset)
        position = await consumer.position(tp)
    return end


async def count_records(consumer: Any, tps: list[TopicPartition], rows: list[PartitionPlan]) -> list[PartitionPlan]:
    """The rows with ``records`` counted by reading ``[new, end)`` of each partition (read_committed: records of
    aborted transactions and markers are not counted). Memory: one fetch at a time, nothing kept."""
    counted = []
    for tp, row in zip(tps, rows, strict=True):
        records = 0
        if row.span:
            consumer.assign([tp])
            consumer.seek(tp, row.new)
            position = row.new
            while position < row.end:
                fetched = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
                records += sum(1 for record in fetched.get(tp, ()) if record.offset < row.end)
                position = await consumer.position(tp)
        counted.append(replace(row, records=records))
    consumer.assign(tps)
    return counted


def refusal(service: str, group: str, members: list[Member]) -> str:
    who = ", ".join(f"{m.client_id}@{m.host}" for m in members)
    return (f"refusing to reset: consumer group {group} has {len(members)} active member(s): {who}.\n"
            f"Stop every `voicecall {service}` process first — on Kubernetes, hold its autoscaler at zero: "
            f"kubectl annotate scaledobject/voicecall-{service} autoscaling.keda.sh/paused-replicas=0 (without "
            f"KEDA: kubectl scale deployment/voicecall-{service} --replicas=0); under voicecall dev: kill -TERM "
            f"$(cat .state/pids/{service}.pid) (it stays stopped until kill -USR1 $(cat .state/pids/dev.pid)); "
            f"otherwise send SIGTERM to the process (it commits and exits). Then run this command again with "
            f"--wait 60s (it waits for the member to leave), then start the service again (remove the "
            f"annotation: autoscaling.keda.sh/paused-replicas-).")


def members_of(described: list[Any], group: str) -> list[Member]:
    """Members from raw DescribeGroups responses (tuples: error, group, state, protocol type, protocol, members)."""
    found: list[Member] = []
    for response in described:
        for entry in response.groups:
            if entry[1] != group:
                continue
            for member in entry[5]:
                found.append(Member(str(member[0]), str(member[1]), str(member[2])))
    return found


async def active_members(admin: Any, group: str, coordinator_wait: float = 30.0) -> list[Member]:
    """The group's members. A broker where no group was ever used answers "coordinator not available" until it has
    created its offsets topic (on this very request): asked again for up to ``coordinator_wait`` seconds."""
    deadline = time.monotonic() + coordinator_wait
    while True:
        try:
            return members_of(await admin.describe_consumer_groups([group]), group)
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def _plan(consumer: Any, topic: str, partitions: list[int], since_ms: int) -> list[PartitionPlan]:
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    committed = {tp.partition: await consumer.committed(tp) for tp in tps}
    found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    ends = await consumer.end_offsets(tps)
    firsts: dict[int, int | None] = {}
    for tp in tps:
        hit = found.get(tp)
        firsts[tp.partition] = (None if hit is None or hit.offset >= ends[tp] else
                                await first_record_at(consumer, tp, hit.offset, ends[tp], since_ms))
    consumer.assign(tps)
    rows = plan(partitions, committed, firsts, {tp.partition: offset for tp, offset in ends.items()})
    if sum(row.span for row in rows) <= COUNT_LIMIT:
        rows = await count_records(consumer, tps, rows)
    return rows


async def reset(settings: CommonSettings, service: str, since_ms: int, dry_run: bool,
                out: TextIO = sys.stdout, err: TextIO = sys.stderr, wait: float = 0.0) -> int:
    """``wait``: seconds to wait for the group's members to leave before refusing."""
    admin = make_admin(settings)  # one for the whole reset: asked every 0.5 s while it waits
    try:
        await admin.start()
        return await _reset(settings, admin, service, since_ms, dry_run, out, err, wait)
    finally:
        await admin.close()


async def _reset(settings: CommonSettings, admin: Any, service: str, since_ms: int, dry_run: bool, out: TextIO,
                 err: TextIO, wait: float) -> int:
    group = group_id(settings, service)
    inputs = [topics.name(settings, suffix) for suffix in (INPUTS[service], *MORE_INPUTS.get(service, ()))]
    members = await active_members(admin, group)
    if members and wait > 0:
        print(f"waiting up to {wait:.0f} s for {len(members)} member(s) of {group} to leave", file=err)
        deadline = time.monotonic() + wait
        while members and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            members = await active_members(admin, group)
    if members:
        print(refusal(service, group, members), file=err)
        return EXIT_ACTIVE
    consumer = make_consumer(settings, group_id=group)
    try:
        await consumer.start()
        existing = await names.partitions(settings)
        for topic in inputs:
            if topic not in existing:
                print(f"topic {topic} does not exist (is VOICECALL_TOPIC_PREFIX right?)", file=err)
                return 2
        plans = {}
        for topic in inputs:
            plans[topic] = await _plan(consumer, topic, existing[topic], since_ms)
            print(format_plan(topic, group, since_ms, plans[topic]), file=out)
        if dry_run:
            print("dry run: nothing committed", file=out)
            return 0
        # Re-check just before committing: a member that joined since would be silently overwritten otherwise.
        members = await active_members(admin, group)
        if members:
            print(refusal(service, group, members), file=err)
            return EXIT_ACTIVE
        offsets = {TopicPartition(topic, row.partition): OffsetAndMetadata(row.new, "replay-reset")
                   for topic, rows in plans.items() for row in rows}
        consumer.assign(list(offsets))  # a consumer commits only for what it is assigned: every input at once
        await consumer.commit(offsets)
        print(f"committed new offsets for group {group}; start `voicecall {service}` to reprocess", file=out)
        return 0
    finally:
        await consumer.stop()
