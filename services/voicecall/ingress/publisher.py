"""Making a push durable: Kafka acks within a deadline, else the spool.

The publisher owns its Kafka producer: it starts it (retrying while Kafka is away; pushes go to the spool
meanwhile), replaces it with a fresh one (new producer id) after a fatal idempotence error, probes the broker
while no pushes arrive, and keeps the broker state that ``/readyz`` reports. Before a producer starts it learns what
the broker takes (limits.py) and makes its batches no larger.

A push's records go into the batcher (one Kafka batch per partition shared by concurrent pushes, see batcher.py)
and the push waits for its batches. When a batch's deadline passes first (or Kafka refuses it), its pushes go to
the spool and the send is *not* cancelled: the spool entry keeps each record's Kafka future, and the drainer
(drain.py), when it reaches that entry, waits for those instead of sending the records again. Only a crash in
between (or an ack that fails after Kafka wrote the record) can then put the same record into Kafka twice; fee
records carry a deterministic ``ce_id`` for the deduplicator, status records too.

While the spool holds anything, new pushes are appended to it rather than sent, so records reach Kafka in the
order they arrived and no request waits for the deadline during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from voicecall import topics
from voicecall.ingress import limits as broker_limits, metrics
from voicecall.ingress.batcher import Batch, Batcher
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.failures import is_fatal_for_producer, is_permanent
from voicecall.ingress.limits import Limits
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog
from voicecall.runtime.failures import BrokerUnreachable
from voicecall.runtime.kafka import Throttle, make_producer
from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record

log = vlog.get("ingress.publisher")

PROBE_EVERY = 5.0  # seconds between metadata round trips that tell /readyz whether Kafka answers


class Unavailable(Exception):
    """Neither Kafka nor the spool could take the push: answer 503."""


class Publisher:
    """``publish`` a push's records; ``start``/``stop`` the producer and the broker probe; ``ready``."""

    def __init__(self, settings: IngressSettings, spool: Spool | None) -> None:
        self.settings = settings
        self.producer: Any = None  # None until the first start succeeds; replaced by a renewal
        self.deadline = settings.ingress_ack_deadline
        self.batcher = Batcher(lambda: self.producer, self.deadline, settings.ingress_linger_ms / 1000)
        self.deadletter_topic = topics.name(settings, "deadletter")
        self.limits = Limits([topics.name(settings, "status.raw"), topics.name(settings, "fee.raw")],
                             self.deadletter_topic, settings.deadletter_max_payload)
        self.spool = spool
        self.started = asyncio.Event()  # the first producer runs
        self.broker_up = True
        self.broker_error: str | None = None
        self._starter: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._learning: asyncio.Task[None] | None = None
        self._batch_size = 0  # the running producer's

    # -- the request path ------------------------------------------------------------------------------------

    async def publish(self, records: list[Record]) -> str:
        """Return ``"kafka"`` or ``"spool"`` once every record is durable; raise :class:`Unavailable`."""
        spool = self.spool
        if spool is not None and spool.has_backlog and spool.usable:
            try:
                await spool.append(records)
                return "spool"
            except SpoolError as error:
                # Spool full while draining: Kafka may well be up, so try it before giving up.
                log.warning("spool refused a push, trying Kafka", error=str(error))
        if self.producer is None:
            return await self._spool_instead(records, None, ConnectionError("Kafka producer not started"))
        batches: list[Batch] = []  # one per record
        try:
            await self._add(records, batches)
            if len(batches) == 1:
                await batches[0].wait()
            else:
                await asyncio.gather(*[b.wait() for b in dict.fromkeys(batches)])
            self.mark_up()
            return "kafka"
        except Exception as error:  # deadline, connection, metadata, refused: all mean "not durable in Kafka yet"
            acked: list[asyncio.Future[None] | None] = [b.acked for b in batches]
            if isinstance(error, MessageSizeTooLargeError):
                self.relearn()  # the broker's limit went down since it was learned
            if not is_permanent(error):  # a refused record says nothing about Kafka's health
                self.mark_down(error)
            self.renew_if_fatal(error, [f for f in acked if f is not None])
            acked += [None] * (len(records) - len(acked))  # not handed to the producer: the drainer sends them
            return await self._spool_instead(records, acked, error)

    async def _add(self, records: list[Record], batches: list[Batch]) -> None:
        """The records into the batcher; ``batches`` gets the batch of each record."""
        batcher = self.batcher
        for record in records:
            partitions = batcher.partitions(record.topic) or await self.wait_partitions(record.topic)
            batches.append(batcher.add(record, partitions))

    async def wait_partitions(self, topic: str) -> list[int]:
        """Not in the producer's metadata yet (Kafka just started, or a first push): wait, within the deadline."""
        async with asyncio.timeout(self.deadline):
            return await self.batcher.wait_partitions(topic)

    async def _spool_instead(self, records: list[Record], acked: list[asyncio.Future[None] | None] | None,
                             error: BaseException) -> str:
        """``acked``: the Kafka future of each record of the push handed to the producer, None for the others (the
        drainer waits for those futures instead of sending their records again)."""
        metrics.BROKER_ERRORS.inc()
        for future in acked or ():
            if future is not None:
                future.add_done_callback(_consume_exception)
        if self.spool is None:
            raise Unavailable(f"Kafka: {error!r}; no spool") from error
        try:
            await self.spool.append(records, attachment=acked)
        except SpoolError as spool_error:
            raise Unavailable(f"Kafka: {error!r}; spool: {spool_error}") from spool_error
        return "spool"

    # -- the producer and the broker state -------------------------------------------------------------------

    def start(self) -> None:
        """Start the producer in the background (pushes are spooled until it runs) and the broker probe."""
        self._starter = asyncio.create_task(self._start(), name="producer-start")
        self._probe = asyncio.create_task(self._probe_loop(), name="broker-probe")

    async def stop(self) -> None:
        """Every batch handed to the producer and answered, then the producer stopped."""
        for task in (self._starter, self._probe, self._renewing, self._learning):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.batcher.flushed()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()

    async def _start(self) -> None:
        self.producer = await self._started_producer()
        self.mark_up()
        log.info("Kafka producer started", bootstrap=self.settings.kafka_bootstrap,
                 largest_record={t: n for t, n in self.limits.largest.items()})
        self.started.set()

    async def _started_producer(self) -> Any:
        """A new producer, started: retried while Kafka is away, each attempt with a producer of its own (and, until
        the broker has told them, a new try at learning its limits)."""
        delay = 0.5
        notice = Throttle()  # once, then at most once a minute: an outage is one line, not one per attempt
        while True:
            if not self.limits.learned:
                await broker_limits.learn(self.settings, self.limits)
            self._batch_size = self.limits.batch_size()
            producer = make_producer(self.settings, client_suffix="-ingress", linger_ms=self.settings.ingress_linger_ms,
                                     max_batch_size=self._batch_size, partitioner=partitioner)
            try:
                await producer.start()
                return producer
            except asyncio.CancelledError:  # stopping while Kafka is away: the half-started producer is closed too
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            except Exception as error:
                with contextlib.suppress(Exception):
                    await producer.stop()
                self.broker_error = str(getattr(error, "reason", "")) or repr(error)
                if notice.due():  # the ingress outlives a broker outage (and a credentials fix): it keeps trying
                    what = "broker unreachable" if isinstance(error, BrokerUnreachable) else "Kafka producer failed"
                    log.warning(f"{what}, retrying; spooling pushes meanwhile",
                                bootstrap=self.settings.kafka_bootstrap, error=self.broker_error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def relearn(self) -> None:
        """Ask the broker for its limits again, in the background (one question at a time)."""
        if self._learning is None or self._learning.done():
            self._learning = asyncio.create_task(self._relearn(), name="limits")

    async def _relearn(self) -> None:
        await broker_limits.learn(self.settings, self.limits)
        if self.producer is not None and self.limits.batch_size() < self._batch_size and (
                self._renewing is None or self._renewing.done()):
            # A topic now takes less than one of our batches: only a new producer makes smaller ones.
            log.warning("a topic's limit is below the producer's batch size, starting a new producer",
                        batch_size=self.limits.batch_size())
            self._renewing = asyncio.create_task(self._renew(), name="producer-renew")

    def renew_if_fatal(self, error: BaseException, futures: Sequence[asyncio.Future[Any]] = ()) -> None:
        fatal = is_fatal_for_producer(error) or any(
            f.done() and not f.cancelled() and is_fatal_for_producer(f.exception()) for f in futures)
        if fatal and self.producer is not None and (self._renewing is None or self._renewing.done()):
            log.warning("producer out of step with the broker, starting a new one", error=repr(error))
            self._renewing = asyncio.create_task(self._renew(), name="producer-renew")

    async def _renew(self) -> None:
        """A fresh producer (new producer id) in place of one whose idempotence state the broker rejects."""
        fresh = await self._started_producer()
        old, self.producer = self.producer, fresh
        log.info("new Kafka producer started")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 10)  # its pending sends fail; their pushes are in the spool

    async def _probe_loop(self) -> None:
        """Keep /readyz honest when no pushes arrive: a metadata round trip tells whether Kafka answers; the
        broker's limits are asked for again now and then (a topic's max.message.bytes may change)."""
        learned = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(PROBE_EVERY)
            producer = self.producer
            if producer is None:
                continue
            try:
                async with asyncio.timeout(3.0):
                    await producer.client.fetch_all_metadata()
                if self.spool is None or not self.spool.has_backlog:
                    self.broker_up = True
                    self.broker_error = None
            except Exception as error:
                self.broker_up = False
                self.broker_error = repr(error)
                continue
            if asyncio.get_running_loop().time() - learned >= broker_limits.LEARN_EVERY:
                learned = asyncio.get_running_loop().time()
                self.relearn()

    def mark_up(self) -> None:
        if not self.broker_up:
            log.info("Kafka acknowledges again")
        self.broker_up = True
        self.broker_error = None

    def mark_down(self, error: BaseException) -> None:
        if self.broker_up:
            log.warning("Kafka did not acknowledge in time, spooling", error=repr(error))
        self.broker_up = False
        self.broker_error = repr(error)

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready = a push can be made durable now: by Kafka, or by the spool while Kafka is away."""
        broker = "up" if self.producer is not None and self.broker_up else "down"
        detail: dict[str, object] = {"broker": broker}
        ok = broker == "up"
        if self.spool is not None:
            spool = detail["spool"] = self.spool.state()
            ok = ok or bool(spool["usable"])
        if self.broker_error and broker == "down":
            detail["broker_error"] = self.broker_error
        return ok, detail


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

