"""``voicecall replay reset``: move a service's consumer group back to the first offset at or after a time.

The service then reprocesses everything from that time on when it next starts. Offsets are committed for the
group by a consumer that is *assigned* the partitions (it never joins the group), which Kafka accepts only while
the group has no members — so the command first refuses while any member is active.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from voicecall import topics
from voicecall.replay import names, window
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import group_id, make_admin, make_consumer

# service → the topic suffix it consumes
INPUTS: dict[str, str] = {"dedup": "fee.raw", "billing": "fee.unique", "recordings": "fee.unique"}

EXIT_ACTIVE = 3  # the group has members: nothing was changed


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    current: int | None  # the group's committed offset; None = nothing committed yet
    new: int
    end: int  # the last stable offset (read_committed high watermark) at planning time

    @property
    def to_reprocess(self) -> int:
        """Offsets between the new position and the end; transaction markers make it an upper bound."""
        return max(0, self.end - self.new)


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str


def plan(partitions: list[int], committed: Mapping[int, int | None], found: Mapping[int, int | None],
         ends: Mapping[int, int]) -> list[PartitionPlan]:
    """Per partition: the first offset at/after the time, or the end offset when no record is that recent."""
    result = []
    for partition in sorted(partitions):
        target = found.get(partition)
        end = ends[partition]
        result.append(PartitionPlan(partition, committed.get(partition), end if target is None else target, end))
    return result


def format_plan(topic: str, group: str, since_ms: int, rows: list[PartitionPlan]) -> str:
    lines = [f"group {group} on {topic}, from {window.iso(since_ms)}:",
             f"{'partition':>9}  {'current':>10}  {'new':>10}  {'end':>10}  {'to reprocess':>12}"]
    for row in rows:
        current = "-" if row.current is None else str(row.current)
        lines.append(f"{row.partition:>9}  {current:>10}  {row.new:>10}  {row.end:>10}  {row.to_reprocess:>12}")
    lines.append(f"total to reprocess: {sum(row.to_reprocess for row in rows)}")
    return "\n".join(lines)


def refusal(service: str, group: str, members: list[Member]) -> str:
    who = ", ".join(f"{m.client_id}@{m.host}" for m in members)
    return (f"refusing to reset: consumer group {group} has {len(members)} active member(s): {who}.\n"
            f"Stop every `voicecall {service}` process first — on Kubernetes: "
            f"kubectl scale deployment/voicecall-{service} --replicas=0; otherwise send SIGTERM to the process "
            f"(it commits and exits) — wait until it has left the group, run this command again, then start "
            f"the service again.")


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


async def active_members(settings: CommonSettings, group: str) -> list[Member]:
    admin = make_admin(settings)
    await admin.start()
    try:
        return members_of(await admin.describe_consumer_groups([group]), group)
    finally:
        await admin.close()


async def reset(settings: CommonSettings, service: str, since_ms: int, dry_run: bool,
                out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    group = group_id(settings, service)
    topic = topics.name(settings, INPUTS[service])
    members = await active_members(settings, group)
    if members:
        print(refusal(service, group, members), file=err)
        return EXIT_ACTIVE
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        existing = await names.partitions(settings)
        if topic not in existing:
            print(f"topic {topic} does not exist (is VOICECALL_TOPIC_PREFIX right?)", file=err)
            return 2
        partitions = existing[topic]
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        rows = plan(partitions, committed, {tp.partition: (o.offset if o else None) for tp, o in found.items()},
                    {tp.partition: offset for tp, offset in ends.items()})
        print(format_plan(topic, group, since_ms, rows), file=out)
        if dry_run:
            print("dry run: nothing committed", file=out)
            return 0
        # Re-check just before committing: a member that joined since would be silently overwritten otherwise.
        members = await active_members(settings, group)
        if members:
            print(refusal(service, group, members), file=err)
            return EXIT_ACTIVE
        await consumer.commit({TopicPartition(topic, row.partition): OffsetAndMetadata(row.new, "replay-reset")
                               for row in rows})
        print(f"committed new offsets for group {group}; start `voicecall {service}` to reprocess", file=out)
        return 0
    finally:
        await consumer.stop()

