"""Several input topics for one stage: they must be co-partitioned, and the group must keep them so.

Partition n of every input belongs to one core (its state), one transactional producer and one transaction. That
holds only when every input has the same partition count (the same key then lands on the same partition number in
each, since every producer of the project partitions by murmur2 of the key) and when the group gives partition n of
all inputs to the same member — which Kafka's range assignor does for topics of equal size and the round-robin
assignor (aiokafka's default) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from voicecall.runtime import config
from voicecall.runtime.failures import Refusal
from voicecall.runtime.kafka import make_admin
from voicecall.runtime.stage.assignment import sticky_assignor

_POLL = 2.0


class InputsMismatch(Refusal):
    """The inputs do not have the same partition count: the stage refuses to run (one line, exit 2)."""


def assignors(inputs: Sequence[str]) -> tuple[type[AbstractPartitionAssignor], ...]:
    """The group's assignor for a stage with these inputs. One input: the sticky assignor, so that survivors keep
    their partitions through a rebalance. Several: the range assignor, the one that keeps partition n of every
    input on one member (co-partitioning is correctness; stickiness only saves restores — the sticky assignor
    balances each topic on its own and may split partition n of two inputs between two members)."""
    return (RangePartitionAssignor,) if len(inputs) > 1 else (sticky_assignor(),)


def mismatch(counts: dict[str, int]) -> str | None:
    """The refusal for these partition counts (topic → count), or None when they agree."""
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{topic} has {count}" for topic, count in counts.items())
    return (f"the input topics must have the same number of partitions (partition n of each is processed "
            f"together): {listed}")


async def partition_counts(settings: config.CommonSettings, topics: Sequence[str]) -> dict[str, int]:
    """Partitions per topic; 0 for a topic that does not exist (yet). Asks for every topic's metadata: a request
    naming a missing topic would create it on a broker that auto-creates topics (with the wrong partitions)."""
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    counts = dict.fromkeys(topics, 0)
    for entry in described:
        if entry.get("error_code", 0) == 0 and entry["topic"] in counts:
            counts[entry["topic"]] = len(entry["partitions"])
    return counts


async def check(settings: config.CommonSettings, topics: Sequence[str], stop: asyncio.Event, log: Any) -> None:
    """Wait until every input exists, then raise :class:`InputsMismatch` unless their partition counts agree."""
    if len(topics) < 2:
        return
    waiting = False
    while not stop.is_set():
        try:
            counts = await partition_counts(settings, topics)
        except KafkaError as error:  # broker not reachable yet: like a missing topic, wait for it
            counts, problem = {}, repr(error)
        else:
            problem = ", ".join(topic for topic, count in counts.items() if count == 0)
        if counts and not problem:
            refusal = mismatch(counts)
            if refusal:
                raise InputsMismatch(refusal)
            return
        if not waiting:
            log.warning("waiting for the input topics", missing=problem)
            waiting = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _POLL)
