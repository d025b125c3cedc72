"""The exactly-once consume → transform → produce shell shared by every stateful or stateless stage.

Contract (dedup and billing both use it; keep it this small):

- A stage supplies a :class:`Stage`: its ``name`` (the consumer group is ``kafka.group_id(settings, name)``), the
  ``input_suffix`` it reads, ``make_core(partition)`` returning a fresh pure :class:`Core` for one input partition,
  and optionally a ``changelog_suffix`` (a compacted topic with the same partition count as the input).
- ``Core.process(record)`` turns one input record into a list of :class:`Output` (possibly empty). It must do no I/O
  and, when it raises, must not have changed its state: the shell then writes a ``deadletter`` record (reason
  ``processing-error``, the stage's name, origin topic/partition/offset, the original payload) instead — a bad record
  never crashes the stage and is never silently dropped. An ``Output`` whose topic is the changelog goes to the
  changelog partition with the input's partition number; every other output is partitioned by its key.
- ``Core.restore(record)`` applies one changelog record (value ``None`` = tombstone). Stateless cores do nothing.
- ``await run_stage(settings, stage, stop, ready=...)`` runs until ``stop`` is set, then finishes and commits the
  batch in hand, closes its producers, leaves the group and returns. ``ready`` is set once the first assignment is
  processed-ready (state restored).

Exactly once, the way Kafka Streams' first EOS mode does it (aiokafka's ``send_offsets_to_transaction`` takes only a
group id, so generation-based fencing of KIP-447 is not available):

- one transactional producer per assigned input partition, ``transactional.id = f"{group}-{topic}-{partition}"``.
  Initialising it on assignment fences the previous owner and makes the broker finish (abort) any transaction the
  previous owner left open — only *then* is the committed input offset read and the state restored from the
  changelog, so both are exactly what the last committed transaction left;
- input is read with ``read_committed``; the partition stays paused while it is prepared;
- per batch (by count ``VOICECALL_BATCH_RECORDS`` and time ``VOICECALL_BATCH_TIME``) and per partition, one
  transaction holds the outputs, the changelog records and the input offset (``send_offsets_to_transaction``);
- a failed transaction is aborted and the partition is prepared again from scratch (new producer, state re-restored,
  seek to the committed offset), since the core's in-memory state already holds the aborted batch's changes;
- a batch fetched across a rebalance is thrown away (a new partition restarts at its committed offset, a kept one
  at the first record it did not process), and a partition that was revoked is never processed with its old
  producer: revocation waits for the batch in flight;
- rebalances are eager (aiokafka has no cooperative protocol): every member gives up every partition, then gets
  its new assignment. The sticky assignor gives survivors their partitions back, and a ready partition given back
  is kept as it was — same producer, state and position — when nobody committed to it in between (its committed
  offset is not past ours); so a survivor stops only for the rebalance itself, not for fencing and restoring.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import IllegalStateError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field

from voicecall import topics
from voicecall.ingress.partition import partitioner  # aiokafka's murmur2 result, without its per-byte loop
from voicecall.runtime import config, deadletter, logging as vlog
from voicecall.runtime.kafka import group_id, make_consumer, make_transactional_producer

__all__ = ["Core", "Output", "ProcessorSettings", "Stage", "run_stage"]


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce inside the partition's transaction."""

    topic: str  # full topic name
    key: bytes | None
    value: bytes | None  # None = tombstone (changelog expiry)
    headers: list[tuple[str, bytes]]


class Core(Protocol):
    """Pure per-partition logic: record in → outputs out."""

    def process(self, record: ConsumerRecord) -> list[Output]: ...

    def restore(self, record: ConsumerRecord) -> None: ...


@dataclass
class Stage:
    name: str  # "dedup" / "billing": group id = runtime.kafka.group_id(settings, name)
    input_suffix: str  # e.g. "fee.raw"
    make_core: Callable[[int], Core]  # partition → fresh core
    changelog_suffix: str | None = None  # e.g. "dedup.changelog"; same partition number as the input


class ProcessorSettings(config.CommonSettings):
    """Settings of the shell; a stage's settings subclass this (a plain CommonSettings gets these defaults)."""

    batch_records: int = Field(2000, ge=1, le=100_000)  # VOICECALL_BATCH_RECORDS: records per transaction
    batch_time: config.Duration = Field(0.1, le=60)  # VOICECALL_BATCH_TIME: longest wait to fill a batch
    # VOICECALL_CONSUMER_SESSION_TIMEOUT: how long a killed instance's partitions wait; 6 s is the brokers' least
    # (group.min.session.timeout.ms), and a heartbeat a second keeps it far from a busy event loop's pauses
    consumer_session_timeout: config.Duration = Field(6.0, ge=1, le=300)
    # VOICECALL_CONSUMER_INSTANCE_ID: static membership (a restarted instance of this id gets its partitions back
    # without a rebalance); unique per instance, e.g. a StatefulSet pod's name. Unset: dynamic membership.
    consumer_instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,200}$")
    transaction_timeout: config.Duration = Field(60.0, ge=1, le=900)  # VOICECALL_TRANSACTION_TIMEOUT
    prepare_timeout: config.Duration = Field(60.0, ge=1)  # VOICECALL_PREPARE_TIMEOUT: producer init + offsets


RECORDS_IN = Counter("voicecall_stage_records_in_total", "Input records processed (committed or not)", ["stage"])
RECORDS_OUT = Counter("voicecall_stage_records_out_total", "Records produced in committed transactions",
                      ["stage", "topic"])
PROCESS_ERRORS = Counter("voicecall_stage_process_errors_total", "Records whose processing raised (deadlettered)",
                         ["stage"])
TXN_SECONDS = Histogram("voicecall_stage_transaction_seconds", "Transaction latency, begin to commit acknowledged",
                        ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
TXN_COMMITS = Counter("voicecall_stage_transactions_total", "Committed transactions", ["stage"])
TXN_ABORTS = Counter("voicecall_stage_transaction_aborts_total", "Failed or aborted transactions", ["stage"])
FENCED = Counter("voicecall_stage_fenced_total", "Times a partition's producer was fenced by a newer owner",
                 ["stage"])
LAG = Gauge("voicecall_stage_consumer_lag", "Records between the committed position and the end of the partition",
            ["stage", "partition"])
RESTORE_SECONDS = Histogram("voicecall_stage_restore_seconds", "Time to restore partitions' state from the changelog",
                            ["stage"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
RESTORED = Counter("voicecall_stage_restored_records_total", "Changelog records applied during restores", ["stage"])
ASSIGNED = Gauge("voicecall_stage_assigned_partitions", "Input partitions owned and ready", ["stage"])

PENDING, READY = "pending", "ready"
_RETRY_BACKOFF = 1.0
_LAYOUT_TTL = 30.0


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    state: str = PENDING
    producer: AIOKafkaProducer | None = None
    core: Core | None = None
    next_offset: int = 0  # the offset the last committed transaction of ours left (= the consumer's start)
    retry_at: float = 0.0
    failures: int = 0
    lag_child: Any = field(default=None, repr=False)


def sticky_assignor() -> type[StickyPartitionAssignor]:
    """aiokafka's sticky assignor keeps its member's last assignment on the class: one class per consumer."""
    return type("StickyAssignor", (StickyPartitionAssignor,), {"member_assignment": None})


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: _Runner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.on_assigned(assigned)


class _Runner:
    def __init__(self, settings: config.CommonSettings, stage: Stage, stop: asyncio.Event,
                 ready: asyncio.Event | None) -> None:
        self.settings = settings
        self.opts = settings if isinstance(settings, ProcessorSettings) else ProcessorSettings.model_construct()
        self.stage = stage
        self.stop = stop
        self.ready = ready
        self.group = group_id(settings, stage.name)
        self.input_topic = topics.name(settings, stage.input_suffix)
        self.changelog = topics.name(settings, stage.changelog_suffix) if stage.changelog_suffix else None
        self.deadletter_topic = topics.name(settings, "deadletter")
        self.source = f"/voicecall/{stage.name}"
        self.log = vlog.get("processor", stage=stage.name)
        self.lock = asyncio.Lock()
        self.parts: dict[TopicPartition, _Partition] = {}
        self.generation = 0
        self.joined = False
        self.layouts: dict[str, tuple[list[int], float]] = {}
        self.parked: dict[TopicPartition, _Partition] = {}  # ready partitions between revocation and assignment
        session_ms = int(self.opts.consumer_session_timeout * 1000)
        self.consumer = make_consumer(
            settings, group_id=self.group, session_timeout_ms=session_ms,
            # Members learn of a rebalance at their next heartbeat, and it waits for the last of them.
            heartbeat_interval_ms=max(100, min(1000, session_ms // 3)),
            # Survivors keep their partitions through a rebalance (see on_revoked).
            partition_assignment_strategy=(sticky_assignor(),),
            group_instance_id=self.opts.consumer_instance_id,
            # A restore may hold the main loop for a while; only a stuck process should lose its partitions.
            max_poll_interval_ms=max(300_000, int(self.opts.prepare_timeout * 2000)))
        self.m_in = RECORDS_IN.labels(stage.name)
        self.m_errors = PROCESS_ERRORS.labels(stage.name)
        self.m_txn = TXN_SECONDS.labels(stage.name)
        self.m_commits = TXN_COMMITS.labels(stage.name)
        self.m_aborts = TXN_ABORTS.labels(stage.name)
        self.m_assigned = ASSIGNED.labels(stage.name)

    # -- rebalance callbacks (run inside the consumer's coordinator task) --------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waiting for the lock means the batch in flight commits (or aborts) before anyone else may own it.
        async with self.lock:
            self.generation += 1
            # The eager protocol revokes every partition at every rebalance; the sticky assignment gives most back.
            # A ready partition is parked, not closed: given back, it resumes at once (no fencing, no restore).
            for tp in revoked:
                part = self.parts.pop(tp, None)
                if part is not None and part.state == READY:
                    self.parked[tp] = part
                elif part is not None:
                    await self._forget(part)
            self.m_assigned.set(0)
            if revoked:
                self.log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            self.generation += 1
            self.joined = True
            parked, self.parked = self.parked, {}
            kept = await self._unchanged([part for tp, part in parked.items() if tp in assigned])
            for part in parked.values():
                if part not in kept:
                    await self._forget(part)
            for part in kept:
                self.parts[part.tp] = part
                self.consumer.seek(part.tp, part.next_offset)
            for tp in assigned:
                self.parts.setdefault(tp, _Partition(tp))
            # Nothing is read from a new partition until its producer has fenced the old owner and its state is back.
            new = assigned - {part.tp for part in kept}
            if new:
                self.consumer.pause(*new)
            self.m_assigned.set(len(kept))
            if assigned:
                self.log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned),
                              kept=sorted(part.tp.partition for part in kept))

    async def _unchanged(self, parts: list[_Partition]) -> list[_Partition]:
        """The parked partitions nobody committed to since we did (a member that dropped out of the group may have
        lost them meanwhile); the others are prepared again. A committed offset behind ours is our own last
        transaction's, not yet visible."""
        kept = []
        for part in parts:
            try:
                committed = await asyncio.wait_for(self.consumer.committed(part.tp), self.opts.prepare_timeout)
            except Exception as error:  # the broker will tell the preparation; prepare it like a new one
                self.log.info("partition prepared again", partition=part.tp.partition, error=repr(error))
                continue
            if committed is None or committed <= part.next_offset:
                kept.append(part)
        return kept

    async def _forget(self, part: _Partition) -> None:
        await self._close(part)
        with contextlib.suppress(KeyError):
            LAG.remove(self.stage.name, str(part.tp.partition))

    # -- preparing a partition: fence, read committed offset, restore, seek ------------------------------------

    def _transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.group}-{tp.topic}-{tp.partition}"

    async def _init_producer(self, part: _Partition) -> None:
        producer = make_transactional_producer(
            self.settings, self._transactional_id(part.tp),
            transaction_timeout_ms=int(self.opts.transaction_timeout * 1000))
        part.producer = producer
        await producer.start()
        # An empty transaction waits for InitProducerId: from here on the old owner is fenced and its open
        # transaction (if any) is aborted, so the committed offset and the changelog are final.
        await producer.begin_transaction()
        await producer.commit_transaction()

    async def _prepare(self) -> None:
        now = time.monotonic()
        if not any(p.state == PENDING and p.retry_at <= now for p in self.parts.values()):
            return
        async with self.lock:
            now = time.monotonic()
            todo = [p for p in self.parts.values() if p.state == PENDING and p.retry_at <= now]
            if not todo:
                return
            for part in todo:
                await self._close_producer(part)
            results = await asyncio.gather(
                *(asyncio.wait_for(self._init_producer(p), self.opts.prepare_timeout) for p in todo),
                return_exceptions=True)
            started: list[_Partition] = []
            for part, result in zip(todo, results, strict=True):
                if isinstance(result, BaseException):
                    await self._fail(part, "producer init failed", result)
                else:
                    started.append(part)
            if self.changelog is not None and started:
                started = await self._with_changelog_partition(started)
            offsets: dict[TopicPartition, int] = {}
            try:
                for part in started:
                    committed = await asyncio.wait_for(self.consumer.committed(part.tp), self.opts.prepare_timeout)
                    if committed is None:
                        begin = await self.consumer.beginning_offsets([part.tp])
                        committed = begin[part.tp]
                    offsets[part.tp] = committed
                cores = await self._restore(started)
            except Exception as error:  # broker trouble: try again later, nothing was processed
                for part in started:
                    await self._fail(part, "prepare failed", error)
                return
            for part in started:
                try:
                    self.consumer.seek(part.tp, offsets[part.tp])
                except IllegalStateError as error:  # the assignment moved on meanwhile; a rebalance follows
                    await self._fail(part, "partition no longer assigned", error)
                    continue
                part.core = cores[part.tp.partition]
                part.next_offset = offsets[part.tp]
                part.state = READY
                part.failures = 0
                part.lag_child = LAG.labels(self.stage.name, str(part.tp.partition))
                self.consumer.resume(part.tp)
            if any(p.state == READY for p in started):
                self.log.info("partitions ready",
                              partitions={p.tp.partition: p.next_offset for p in started if p.state == READY})
            self.m_assigned.set(sum(1 for p in self.parts.values() if p.state == READY))

    async def _with_changelog_partition(self, parts: list[_Partition]) -> list[_Partition]:
        """The partitions whose changelog partition exists; the others wait (end_offsets would hang on them)."""
        assert self.changelog is not None and parts[0].producer is not None
        try:
            available = await parts[0].producer.partitions_for(self.changelog)
        except Exception as error:
            for part in parts:
                await self._fail(part, "changelog metadata unavailable", error)
            return []
        result = []
        for part in parts:
            if part.tp.partition in available:
                result.append(part)
            else:
                await self._fail(part, "changelog partition missing", RuntimeError(
                    f"{self.changelog} has no partition {part.tp.partition}: it needs as many partitions as "
                    f"{self.input_topic}"))
        return result

    async def _restore(self, parts: list[_Partition]) -> dict[int, Core]:
        cores = {p.tp.partition: self.stage.make_core(p.tp.partition) for p in parts}
        if self.changelog is None or not parts:
            return cores
        started = time.monotonic()
        reader = make_consumer(self.settings, group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
        await reader.start()
        applied = 0
        try:
            tps = [TopicPartition(self.changelog, p.tp.partition) for p in parts]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            # read_committed: the end is the last stable offset; nobody but our own, fresh producer writes here.
            ends = await reader.end_offsets(tps)
            remaining = {tp for tp in tps if await reader.position(tp) < ends[tp]}
            progress = time.monotonic()
            while remaining:
                batch = await reader.getmany(*remaining, timeout_ms=500, max_records=100_000)
                for tp, records in batch.items():
                    core = cores[tp.partition]
                    for record in records:
                        core.restore(record)
                    applied += len(records)
                    progress = time.monotonic()
                for tp in list(remaining):
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                if remaining and time.monotonic() - progress > self.opts.prepare_timeout:
                    raise TimeoutError(f"changelog restore made no progress for {self.opts.prepare_timeout:.0f} s")
        finally:
            await reader.stop()
        elapsed = time.monotonic() - started
        RESTORE_SECONDS.labels(self.stage.name).observe(elapsed)
        RESTORED.labels(self.stage.name).inc(applied)
        self.log.info("state restored", partitions=sorted(p.tp.partition for p in parts), records=applied,
                      seconds=round(elapsed, 3))
        return cores

    async def _fail(self, part: _Partition, what: str, error: BaseException) -> None:
        """Forget everything about the partition and prepare it again later (fresh producer, state, offset)."""
        fenced = isinstance(error, ProducerFenced)
        part.failures += 1
        if fenced:
            FENCED.labels(self.stage.name).inc()
            # A newer owner exists: our group membership is stale and a rebalance will take the partition away.
            # Re-initialising right now would fence the rightful owner in turn, so wait a session first.
            delay = self.opts.consumer_session_timeout
        else:
            delay = min(_RETRY_BACKOFF * 2 ** (part.failures - 1), 30.0)
        self.log.warning(what, partition=part.tp.partition, error=repr(error), fenced=fenced, retry_in=delay)
        await self._close_producer(part)
        part.core = None
        part.state = PENDING
        part.retry_at = time.monotonic() + delay
        if part.tp in self.consumer.assignment():
            self.consumer.pause(part.tp)

    async def _close_producer(self, part: _Partition) -> None:
        producer, part.producer = part.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def _close(self, part: _Partition) -> None:
        await self._close_producer(part)
        part.core = None
        part.state = PENDING

    # -- the loop ------------------------------------------------------------------------------------------------

    async def _fetch(self) -> tuple[int, dict[TopicPartition, list[ConsumerRecord]]]:
        generation = self.generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.batch_time
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        while True:
            remaining = max(0.0, deadline - loop.time())
            got = await self.consumer.getmany(timeout_ms=int(remaining * 1000),
                                              max_records=self.opts.batch_records - count)
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
            if (count >= self.opts.batch_records or loop.time() >= deadline or self.stop.is_set()
                    or generation != self.generation):
                return generation, batch

    def _failed(self, record: ConsumerRecord, error: Exception) -> Output:
        self.m_errors.inc()
        self.log.warning("record failed, deadlettered", partition=record.partition, offset=record.offset,
                         error=repr(error))
        return self._deadletter(record, error)

    def _deadletter(self, record: ConsumerRecord, error: Exception) -> Output:
        raw: bytes | None = record.value
        extra: dict[str, Any] = {}
        if raw is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                extra["parsed"] = orjson.loads(raw)
        value = deadletter.value(
            "processing-error", self.stage.name,
            {"topic": record.topic, "partition": record.partition, "offset": record.offset},
            raw=raw if raw is not None else b"", max_bytes=self.settings.deadletter_max_payload,
            error=f"{type(error).__name__}: {error}"[:2000], **extra)
        key, body, headers = deadletter.encode(value, self.source, key=record.key)
        return Output(self.deadletter_topic, key, body, headers)

    async def _commit(self, part: _Partition, outputs: list[Output], next_offset: int) -> None:
        producer = part.producer
        assert producer is not None
        started = time.monotonic()
        sends: list[asyncio.Future[Any]] = []
        try:
            await producer.begin_transaction()
            # The offsets first: a produce the broker must verify as part of the transaction (KIP-890) while the
            # coordinator is still adding the group to it is refused with NotEnoughReplicas and retried 100 ms later.
            await producer.send_offsets_to_transaction({part.tp: next_offset}, self.group)
            # Partitions are chosen here (the same murmur2 as the default partitioner): aiokafka would otherwise
            # rebuild the topic's partition lists for every record.
            layout: dict[str, list[int]] = {}
            for out in outputs:
                if out.topic == self.changelog:
                    partition = part.tp.partition
                else:
                    choices = layout.get(out.topic)
                    if choices is None:
                        choices = layout[out.topic] = await self._partitions(producer, out.topic)
                    partition = partitioner(out.key, choices, choices)
                sends.append(await producer.send(out.topic, value=out.value, key=out.key, partition=partition,
                                                 headers=out.headers))
            await producer.commit_transaction()
        except Exception as error:
            for sent in sends:  # the transaction's error is the one that counts; don't log each send's again
                sent.add_done_callback(_retrieve)
            self.m_aborts.inc()
            with contextlib.suppress(Exception):
                if producer._txn_manager is not None and not producer._txn_manager.is_fatal_error():
                    await asyncio.wait_for(producer.abort_transaction(), 10)
            await self._fail(part, "transaction failed, partition will be prepared again", error)
            return
        self.m_txn.observe(time.monotonic() - started)
        self.m_commits.inc()
        part.next_offset = next_offset
        per_topic: dict[str, int] = {}
        for out in outputs:
            per_topic[out.topic] = per_topic.get(out.topic, 0) + 1
        for topic, count in per_topic.items():
            RECORDS_OUT.labels(self.stage.name, topic).inc(count)

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partitions, from metadata at most ``_LAYOUT_TTL`` old (partitions are added rarely)."""
        now = time.monotonic()
        cached = self.layouts.get(topic)
        if cached is None or now - cached[1] > _LAYOUT_TTL:
            cached = (sorted(await producer.partitions_for(topic)), now)
            self.layouts[topic] = cached
        return cached[0]

    async def _process(self, generation: int, batch: dict[TopicPartition, list[ConsumerRecord]]
                       ) -> None:
        async with self.lock:
            if generation != self.generation:
                # A rebalance happened meanwhile: a new or prepared-again partition restarts at its committed offset,
                # but a kept one would go on after these records: back to the first one not processed.
                for tp in batch:
                    part = self.parts.get(tp)
                    if part is not None and part.state == READY and tp in self.consumer.assignment():
                        self.consumer.seek(tp, part.next_offset)
                return
            work: list[tuple[_Partition, list[Output], int]] = []
            for tp, records in batch.items():
                part = self.parts.get(tp)
                if part is None or part.state != READY:
                    continue
                outputs: list[Output] = []
                last = -1
                taken = 0
                process = part.core.process  # type: ignore[union-attr]
                for record in records:
                    if record.offset < part.next_offset:
                        continue
                    try:
                        outputs.extend(process(record))
                    except Exception as error:
                        outputs.append(self._failed(record, error))
                    last = record.offset
                    taken += 1
                if last >= 0:
                    self.m_in.inc(taken)
                    work.append((part, outputs, last + 1))
            if work:
                await asyncio.gather(*(self._commit(part, outputs, nxt) for part, outputs, nxt in work))

    async def _update_lag(self) -> None:
        for part in list(self.parts.values()):
            if part.state != READY or part.lag_child is None:
                continue
            end = self.consumer.last_stable_offset(part.tp)
            if end is None:
                end = self.consumer.highwater(part.tp)
            if end is not None:
                # Every record the consumer handed over is processed by now; its position is past the transaction
                # markers too (not records): without it an idle transactional input would show a lag of 1.
                try:
                    position = await self.consumer.position(part.tp)
                except IllegalStateError:  # no longer assigned: a rebalance is under way
                    continue
                part.lag_child.set(max(0, end - max(part.next_offset, position)))

    async def run(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.input_topic], listener=_Listener(self))
        self.log.info("stage started", group=self.group, input=self.input_topic, changelog=self.changelog)
        try:
            while not self.stop.is_set():
                await self._prepare()
                if self.ready is not None and not self.ready.is_set() and self.joined and all(
                        p.state == READY for p in self.parts.values()):
                    self.ready.set()
                generation, batch = await self._fetch()
                if batch:
                    await self._process(generation, batch)
                await self._update_lag()  # also when idle or stuck: a lag alert must see a stage that stopped moving
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        # No transaction is open here: every batch commits or aborts before the loop looks at ``stop`` again.
        async with self.lock:
            for part in [*self.parts.values(), *self.parked.values()]:
                await self._close(part)
        with contextlib.suppress(Exception):
            # leaves the group, so its partitions move on at once (a static member does not: they wait for it to
            # come back, or for the session timeout)
            await asyncio.wait_for(self.consumer.stop(), 30)
        self.m_assigned.set(0)
        self.log.info("stage stopped")


async def run_stage(settings: config.CommonSettings, stage: Stage, stop: asyncio.Event, *,
                    ready: asyncio.Event | None = None) -> None:
    """Run ``stage`` exactly once until ``stop`` is set (see the module docstring for the contract)."""
    await _Runner(settings, stage, stop, ready).run()
