"""The input partitions a stage owns, and preparing each one before its first record is read.

A partition is *pending* from its assignment (or a failure) until it is prepared, then *ready*: its producer has
fenced the previous owner, its committed offset is read, its core is restored from the changelog, and the consumer
is positioned there. Only then is it resumed (it stays paused meanwhile, so nothing is read too early).
Partitions are kept by partition number: the unit that owns one producer, one core and one changelog partition.

Rebalances are eager (aiokafka has no cooperative protocol): every member gives up every partition, then gets its
new assignment. The sticky assignor gives survivors their partitions back, and a ready partition given back is kept
as it was — same producer, core and position — when nobody committed to it in between (its committed offsets are
not past ours); so a survivor stops only for the rebalance itself, not for fencing and restoring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import IllegalStateError, ProducerFenced

from voicecall.runtime import config, logging as vlog
from voicecall.runtime.stage.contract import Core, Stage, StageSettings
from voicecall.runtime.stage.metrics import StageMetrics
from voicecall.runtime.stage.restore import Skipped, restore
from voicecall.runtime.stage.transaction import Layouts, PartitionProducer

PENDING, READY = "pending", "ready"
_RETRY_BACKOFF = 1.0


def sticky_assignor() -> type[StickyPartitionAssignor]:
    """aiokafka's sticky assignor keeps its member's last assignment on the class: one class per consumer."""
    return type("StickyAssignor", (StickyPartitionAssignor,), {"member_assignment": None})


@dataclass(eq=False)
class Partition:
    """What the stage holds for one input partition number."""

    number: int
    inputs: list[TopicPartition]  # the input topics' partitions of this number
    state: str = PENDING
    producer: PartitionProducer | None = None
    core: Core | None = None
    # Per input: the offset our last committed transaction left (= where the consumer starts).
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    retry_at: float = 0.0
    failures: int = 0
    check_sizes: bool = False  # a transaction failed on an oversized output: check outputs until it is found
    lag: Any = field(default=None, repr=False)  # the lag gauge's child


class Assignment:
    """The owned partitions; the rebalance callbacks and the batch in flight take turns on :attr:`lock`."""

    def __init__(self, settings: config.CommonSettings, opts: StageSettings, stage: Stage,
                 consumer: AIOKafkaConsumer, group: str, metrics: StageMetrics) -> None:
        self.settings = settings
        self.opts = opts
        self.stage = stage
        self.consumer = consumer
        self.group = group
        self.metrics = metrics
        self.log = vlog.get("processor", stage=stage.name)
        self.lock = asyncio.Lock()
        self.parts: dict[int, Partition] = {}
        self.parked: dict[int, Partition] = {}  # ready partitions between a revocation and the next assignment
        self.generation = 0  # moves on at every rebalance: a batch fetched before one is thrown away
        self.joined = False
        self.layouts = Layouts()

    def all_ready(self) -> bool:
        return self.joined and all(p.state == READY for p in self.parts.values())

    def _count_ready(self) -> None:
        self.metrics.assigned.set(sum(1 for p in self.parts.values() if p.state == READY))

    # -- rebalance callbacks (run inside the consumer's coordinator task) --------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waiting for the lock means the batch in flight commits (or aborts) before anyone else may own it.
        async with self.lock:
            self.generation += 1
            # A ready partition is parked, not closed: given back by the assignment, it resumes at once.
            for number in {tp.partition for tp in revoked}:
                part = self.parts.pop(number, None)
                if part is not None and part.state == READY:
                    self.parked[number] = part
                elif part is not None:
                    await self.forget(part)
            self._count_ready()
            if revoked:
                self.log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            self.generation += 1
            self.joined = True
            inputs: dict[int, set[TopicPartition]] = {}
            for tp in assigned:
                inputs.setdefault(tp.partition, set()).add(tp)
            parked, self.parked = self.parked, {}
            kept = await self._unchanged([p for n, p in parked.items() if set(p.inputs) == inputs.get(n)])
            for part in parked.values():
                if part not in kept:
                    await self.forget(part)
            for part in kept:
                self.parts[part.number] = part
                for tp in part.inputs:
                    self.consumer.seek(tp, part.offsets[tp])
            new = [tp for tp in assigned if tp.partition not in {part.number for part in kept}]
            for tp in new:
                part = self.parts.setdefault(tp.partition, Partition(tp.partition, []))
                if tp not in part.inputs:
                    part.inputs.append(tp)
            # Nothing is read from a new partition until its producer has fenced the old owner and its state is back.
            if new:
                self.consumer.pause(*new)
            self._count_ready()
            if assigned:
                self.log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned),
                              kept=sorted(part.number for part in kept))

    async def _unchanged(self, parts: list[Partition]) -> list[Partition]:
        """The parked partitions nobody committed to since we did (a member that dropped out of the group may have
        lost them meanwhile); the others are prepared again. A committed offset behind ours is our own last
        transaction's, not yet visible."""
        kept = []
        for part in parts:
            try:
                for tp in part.inputs:
                    committed = await asyncio.wait_for(self.consumer.committed(tp), self.opts.prepare_timeout)
                    if committed is not None and committed > part.offsets[tp]:
                        break
                else:
                    kept.append(part)
            except Exception as error:  # prepared like a new one, which will tell what the broker says
                self.log.info("partition prepared again", partition=part.number, error=repr(error))
        return kept

    def rewind(self, tps: Iterable[TopicPartition]) -> None:
        """Records of these partitions were fetched but thrown away (a rebalance came in between): a kept partition
        must read them again, from the first one it did not process (a new one starts at its committed offset)."""
        assigned = self.consumer.assignment()
        for tp in tps:
            part = self.parts.get(tp.partition)
            if part is not None and part.state == READY and tp in assigned and tp in part.offsets:
                self.consumer.seek(tp, part.offsets[tp])

    # -- preparing: fence, committed offsets, restore, seek ----------------------------------------------------

    async def prepare(self) -> None:
        """Prepare the pending partitions whose retry time has come (all of them together)."""
        now = time.monotonic()
        if not any(p.state == PENDING and p.retry_at <= now for p in self.parts.values()):
            return
        async with self.lock:
            now = time.monotonic()
            todo = [p for p in self.parts.values() if p.state == PENDING and p.retry_at <= now and self._whole(p)]
            if not todo:
                return
            started = await self._start_producers(todo)
            if self.stage.changelog_topic is not None and started:
                started = await self._with_changelog_partition(started, self.stage.changelog_topic)
            offsets: dict[TopicPartition, int] = {}
            try:
                for part in started:
                    for tp in part.inputs:
                        offsets[tp] = await asyncio.wait_for(self._committed(tp), self.opts.prepare_timeout)
                cores = await self._restore(started)
            except Exception as error:  # broker trouble: try again later, nothing was processed
                for part in started:
                    await self.fail(part, "prepare failed", error)
                return
            for part in started:
                try:
                    for tp in part.inputs:
                        self.consumer.seek(tp, offsets[tp])
                except IllegalStateError as error:  # the assignment moved on meanwhile; a rebalance follows
                    await self.fail(part, "partition no longer assigned", error)
                    continue
                part.core = cores[part.number]
                part.offsets = {tp: offsets[tp] for tp in part.inputs}
                part.state = READY
                part.failures = 0
                part.lag = self.metrics.lag(part.number)
                self.consumer.resume(*part.inputs)
            ready = {p.number: min(p.offsets.values()) for p in started if p.state == READY}
            if ready:
                self.log.info("partitions ready", partitions=ready)
            self._count_ready()

    def _whole(self, part: Partition) -> bool:
        """Whether this member holds partition ``part.number`` of every input: state and transactions are per
        number, so a number is never processed with some of its inputs elsewhere (it waits for a rebalance)."""
        missing = set(self.stage.inputs) - {tp.topic for tp in part.inputs}
        if missing and part.retry_at != float("inf"):
            self.log.warning("partition held: not every input's partition of this number is assigned here",
                             partition=part.number, missing=sorted(missing))
            part.retry_at = float("inf")  # logged once; the next assignment makes a new Partition
        return not missing

    async def _start_producers(self, parts: list[Partition]) -> list[Partition]:
        for part in parts:
            await self._close_producer(part)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._start_producer(p), self.opts.prepare_timeout) for p in parts),
            return_exceptions=True)
        started = []
        for part, result in zip(parts, results, strict=True):
            if isinstance(result, BaseException):
                await self.fail(part, "producer init failed", result)
            else:
                started.append(part)
        return started

    async def _start_producer(self, part: Partition) -> None:
        part.producer = PartitionProducer(
            self.settings, f"{self.group}-{self.stage.input_topic}-{part.number}", partition=part.number,
            group=self.group, changelog=self.stage.changelog_topic, layouts=self.layouts,
            transaction_timeout=self.opts.transaction_timeout)
        await part.producer.start()

    async def _with_changelog_partition(self, parts: list[Partition], changelog: str) -> list[Partition]:
        """The partitions whose changelog partition exists; the others wait (end_offsets would hang on them)."""
        assert parts[0].producer is not None
        try:
            available = await parts[0].producer.partitions_for(changelog)
        except Exception as error:
            for part in parts:
                await self.fail(part, "changelog metadata unavailable", error)
            return []
        result = []
        for part in parts:
            if part.number in available:
                result.append(part)
            else:
                await self.fail(part, "changelog partition missing", RuntimeError(
                    f"{changelog} has no partition {part.number}: it needs as many partitions as "
                    f"{self.stage.input_topic}"))
        return result

    async def _committed(self, tp: TopicPartition) -> int:
        committed = await self.consumer.committed(tp)
        if committed is None:
            committed = (await self.consumer.beginning_offsets([tp]))[tp]
        return int(committed)

    async def _restore(self, parts: list[Partition]) -> dict[int, Core]:
        cores = {p.number: self.stage.make_core(p.number) for p in parts}
        changelog = self.stage.changelog_topic
        if changelog is None or not parts:
            return cores
        started = time.monotonic()
        skipped = Skipped(self.metrics.restore_errors, self.log, changelog)
        applied = await restore(self.settings, changelog, cores, timeout=self.opts.prepare_timeout, skipped=skipped)
        elapsed = time.monotonic() - started
        self.metrics.restore_seconds.observe(elapsed)
        self.metrics.restored.inc(applied)
        self.log.info("state restored", partitions=sorted(cores), records=applied, skipped=skipped.count,
                      seconds=round(elapsed, 3))
        return cores

    # -- failing and closing ------------------------------------------------------------------------------------

    async def fail(self, part: Partition, what: str, error: BaseException) -> None:
        """Forget everything about the partition and prepare it again later (fresh producer, state, offsets)."""
        fenced = isinstance(error, ProducerFenced)
        part.failures += 1
        if fenced:
            self.metrics.fenced.inc()
            # A newer owner exists: our group membership is stale and a rebalance will take the partition away.
            # Re-initialising right now would fence the rightful owner in turn, so wait a session first.
            delay = self.opts.consumer_session_timeout
        else:
            delay = min(_RETRY_BACKOFF * 2 ** (part.failures - 1), 30.0)
        self.log.warning(what, partition=part.number, error=repr(error), fenced=fenced, retry_in=delay)
        await self.close(part)
        part.retry_at = time.monotonic() + delay
        assigned = self.consumer.assignment()
        if held := [tp for tp in part.inputs if tp in assigned]:
            self.consumer.pause(*held)

    async def _close_producer(self, part: Partition) -> None:
        producer, part.producer = part.producer, None
        if producer is not None:
            await producer.close()

    async def close(self, part: Partition) -> None:
        await self._close_producer(part)
        part.core = None
        part.state = PENDING

    async def forget(self, part: Partition) -> None:
        """A partition no longer ours: closed, and its lag is another instance's to report."""
        await self.close(part)
        self.metrics.forget_lag(part.number)

    async def close_all(self) -> None:
        async with self.lock:
            for part in [*self.parts.values(), *self.parked.values()]:
                await self.close(part)
        self.metrics.assigned.set(0)


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assignment: Assignment) -> None:
        self._assignment = assignment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._assignment.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._assignment.on_assigned(assigned)
