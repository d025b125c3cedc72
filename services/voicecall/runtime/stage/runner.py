"""The loop: prepare what is pending, fetch a batch, run it through the cores, commit one transaction per partition.

Every step that touches the owned partitions holds the assignment's lock, so a rebalance waits for the batch in
flight and a batch never runs across one (its generation would have moved on).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord

from voicecall.runtime import config, deadletter, logging as vlog, metrics, tracing
from voicecall.runtime.age import AGE
from voicecall.runtime.kafka import group_id, make_consumer
from voicecall.runtime.record import Record
from voicecall.runtime.stage import inputs, oversize
from voicecall.runtime.stage.assignment import READY, Assignment, Listener, Partition
from voicecall.runtime.stage.contract import Stage, StageSettings
from voicecall.runtime.stage.metrics import StageMetrics
from voicecall.runtime.stage.ticks import Ticks

Batch = dict[TopicPartition, list[ConsumerRecord]]
Seen = tuple[list[Any], list[Any]]  # per partition: each input's headers (age on commit), its span (tracing on)


class Runner:
    def __init__(self, settings: config.CommonSettings, stage: Stage, stop: asyncio.Event,
                 ready: asyncio.Event | None) -> None:
        self.settings = settings
        self.opts = settings if isinstance(settings, StageSettings) else StageSettings.model_construct()
        self.stage = stage
        self.stop = stop
        self.ready = ready
        self.group = group_id(settings, stage.name)
        self.log = vlog.get("processor", stage=stage.name)
        self.metrics = StageMetrics(stage.name)
        session_ms = int(self.opts.consumer_session_timeout * 1000)
        self.consumer = make_consumer(
            settings, group_id=self.group, wait=stop, session_timeout_ms=session_ms,
            # Members learn of a rebalance at their next heartbeat, and it waits for the last of them.
            heartbeat_interval_ms=max(100, min(1000, session_ms // 3)),
            partition_assignment_strategy=inputs.assignors(stage.inputs),
            group_instance_id=self.opts.consumer_instance_id,
            # A restore may hold the main loop for a while; only a stuck process should lose its partitions.
            max_poll_interval_ms=max(300_000, int(self.opts.prepare_timeout * 2000)))
        self.assignment = Assignment(settings, self.opts, stage, self.consumer, self.group, self.metrics)
        self.ticks = Ticks(stage, self.opts.batch_records, self.consumer, self.log)

    async def run(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(list(self.stage.inputs), listener=Listener(self.assignment))
        self.log.info("stage started", group=self.group, inputs=list(self.stage.inputs),
                      changelog=self.stage.changelog_topic)
        try:
            while not self.stop.is_set():
                await self.assignment.prepare()
                if self.ready is not None and not self.ready.is_set() and self.assignment.all_ready():
                    self.ready.set()
                generation, batch = await self._fetch()
                tick = self.ticks.due()
                if batch or tick:
                    await self._process(generation, batch, tick)
                await self._update_lag()  # also when idle or stuck: a lag alert must see a stage that stopped moving
        finally:
            await self._shutdown()

    async def _fetch(self) -> tuple[int, Batch]:
        generation = self.assignment.generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.batch_time
        batch: Batch = {}
        count = 0
        while True:
            remaining = max(0.0, deadline - loop.time())
            got = await self.consumer.getmany(timeout_ms=int(remaining * 1000),
                                              max_records=self.opts.batch_records - count)
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
            if (count >= self.opts.batch_records or loop.time() >= deadline or self.stop.is_set()
                    or generation != self.assignment.generation):
                return generation, batch

    async def _process(self, generation: int, batch: Batch, tick: bool = False) -> None:
        assignment = self.assignment
        async with assignment.lock:
            if generation != assignment.generation:  # a rebalance happened meanwhile
                assignment.rewind(batch)
                return
            work: dict[Partition, tuple[list[Record], dict[TopicPartition, int]]] = {}
            seen: dict[Partition, Seen] = {}
            traced = tracing.ACTIVE
            for tp, records in batch.items():
                part = assignment.parts.get(tp.partition)
                if part is None or part.state != READY or part.core is None:
                    continue
                outputs, offsets = work.setdefault(part, ([], {}))
                heads, spans = seen.get(part) or seen.setdefault(part, ([], []))
                start = part.offsets.get(tp, 0)
                process = part.core.process
                check = part.check_sizes
                last = -1
                taken = 0
                for record in records:
                    if record.offset < start:
                        continue
                    if traced:
                        produced = self._traced(record, process, spans)
                    else:
                        try:
                            produced = process(record)
                        except Exception as error:
                            produced = [self._failed(record, error)]
                    if check:
                        produced = self._fit(part, record, produced)
                    outputs.extend(produced)
                    heads.append(record.headers)
                    last = record.offset
                    taken += 1
                if last >= 0:
                    self.metrics.records_in.inc(taken)
                    offsets[tp] = last + 1
            if tick:  # timers' outputs join the partition's transaction (or make one of their own)
                self.ticks.run(assignment.parts.values(), work)
            jobs = [self._commit(part, outputs, offsets, seen.get(part)) for part, (outputs, offsets) in work.items()
                    if offsets or outputs]
            if jobs:
                await asyncio.gather(*jobs)

    def _traced(self, record: ConsumerRecord, process: Any, spans: list[Any]) -> list[Record]:
        """``process`` inside the record's consumer span; the outputs carry that span's context."""
        span = tracing.consumer_span(record, self.group, self.stage.name)
        spans.append(span)
        with tracing.current(span):
            try:
                produced: list[Record] = process(record)
            except Exception as error:
                tracing.fail(span, error)
                produced = [self._failed(record, error)]
        for out in produced:  # a tombstone and the changelog carry no CloudEvents headers
            if out.value is not None and out.topic != self.stage.changelog_topic:
                out.headers = tracing.stamped(out.headers, span)
        return produced

    async def _commit(self, part: Partition, records: list[Record], offsets: dict[TopicPartition, int],
                      seen: Seen | None = None) -> None:
        assert part.producer is not None
        heads, spans = seen or ([], [])
        started = time.monotonic()
        try:
            await part.producer.commit(records, offsets)
        except Exception as error:
            for span in spans:
                tracing.fail(span, f"transaction aborted: {error!r}")
                span.end()
            self.metrics.aborts.inc()
            if oversize.caused(error):  # the same input would make the same output: find it on the next try
                part.check_sizes = True
            await self.assignment.fail(part, "transaction failed, partition will be prepared again", error)
            return
        self.metrics.transaction_seconds.observe(time.monotonic() - started)
        self.metrics.commits.inc()
        AGE.observe(self.stage.name, heads, time.time())
        for span in spans:
            span.end()
        part.offsets.update(offsets)
        per_topic: dict[str, int] = {}
        for out in records:
            per_topic[out.topic] = per_topic.get(out.topic, 0) + 1
        for topic, count in per_topic.items():
            self.metrics.records_out(topic, count)

    def _failed(self, record: ConsumerRecord, error: Exception) -> Record:
        self.metrics.errors.inc()
        self.log.warning("record failed, deadlettered", partition=record.partition, offset=record.offset,
                         error=repr(error))
        parsed: Any = deadletter.UNPARSED
        if record.value is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(record.value)
        return deadletter.for_record(record, deadletter.Reason.PROCESSING_ERROR, self.stage.name,
                                     self.stage.deadletter_topic, detail=f"{type(error).__name__}: {error}"[:2000],
                                     parsed=parsed, max_bytes=self.settings.deadletter_max_payload)

    def _fit(self, part: Partition, record: ConsumerRecord, produced: list[Record]) -> list[Record]:
        fitted, replaced = oversize.fit(record, produced, self.stage.name, self.stage.deadletter_topic,
                                        self.settings.deadletter_max_payload)
        if replaced:
            part.check_sizes = False
            self.metrics.errors.inc()
            self.log.warning("output too large, deadlettered", partition=record.partition, offset=record.offset,
                             outputs=replaced)
        return fitted

    async def _update_lag(self) -> None:
        for part in list(self.assignment.parts.values()):
            if part.state != READY or part.lag is None:
                continue
            lag: int | None = None
            for tp, offset in part.offsets.items():
                end = self.consumer.last_stable_offset(tp)
                if end is None:
                    end = self.consumer.highwater(tp)
                if end is None:
                    continue
                # Every record the consumer handed over is processed by now; its position is past the transaction
                # markers too (not records): without it an idle transactional input would show a lag of 1.
                try:
                    position = await self.consumer.position(tp)
                except IllegalStateError:  # no longer assigned: a rebalance is under way
                    lag = None
                    break
                lag = (lag or 0) + max(0, end - max(offset, position))
            if lag is not None:
                part.lag.set(lag)

    async def _shutdown(self) -> None:
        # No transaction is open here: every batch commits or aborts before the loop looks at ``stop`` again.
        await self.assignment.close_all()
        with contextlib.suppress(Exception):
            # leaves the group, so its partitions move on at once (a static member does not: they wait for it to
            # come back, or for the session timeout)
            await asyncio.wait_for(self.consumer.stop(), 30)
        self.log.info("stage stopped")


async def run_stage(settings: config.CommonSettings, stage: Stage, stop: asyncio.Event, *,
                    ready: asyncio.Event | None = None) -> None:
    """Run ``stage`` exactly once until ``stop`` is set (see :mod:`voicecall.runtime.stage` for the contract).
    Inputs of different partition counts are refused before any client is made (:class:`inputs.InputsMismatch`)."""
    tracing.setup(stage.name)  # on only when the OTEL_* variables ask for it
    await inputs.check(settings, stage.inputs, stop, vlog.get("processor", stage=stage.name))
    await Runner(settings, stage, stop, ready).run()


async def serve_stage(settings: config.CommonSettings, stage: Stage, stop: asyncio.Event,
                      ready: asyncio.Event | None = None, **started: Any) -> None:
    """A stage's process: ``/metrics``, ``/healthz`` and ``/readyz`` (ready once every partition is) beside
    :func:`run_stage`; ``started`` are logged with the ops port once it listens."""
    ready = ready or asyncio.Event()
    runner = await metrics.serve_ops(settings.metrics_host, settings.metrics_port,
                                     lambda: (ready.is_set(), {"stage": stage.name}))
    vlog.get(stage.name).info(f"{stage.name} started", ops_port=metrics.bound_port(runner), **started)
    try:
        await run_stage(settings, stage, stop, ready=ready)
    finally:
        await runner.cleanup()
