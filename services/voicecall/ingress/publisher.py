"""Making a push durable: Kafka acks within a deadline, else the spool; and draining the spool back to Kafka.

The publisher owns its Kafka producer: it starts it (retrying while Kafka is away; pushes go to the spool
meanwhile), replaces it with a fresh one (new producer id) after a fatal idempotence error, probes the broker
while no pushes arrive, and keeps the broker state that ``/readyz`` reports.

A push's records go into the batcher (one Kafka batch per partition shared by concurrent pushes, see batcher.py)
and the push waits for its batches. When a batch's deadline passes first, its pushes go to the spool and the send
is *not* cancelled: the spool entry keeps the batches' Kafka futures, and the drainer, when it reaches that entry,
skips it if Kafka acknowledged it after all. Only a crash in between (or an ack that fails
after the deadline) can then put the same records into Kafka twice; fee records carry a deterministic ``ce_id``
for the deduplicator, status records too.

While the spool holds anything, new pushes are appended to it rather than sent, so records reach Kafka in the
order they arrived and no request waits for the deadline during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from voicecall.ingress import metrics
from voicecall.ingress.batcher import Batch, Batcher
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog
from voicecall.runtime.failures import BrokerUnreachable
from voicecall.runtime.kafka import Throttle, make_producer
from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record

log = vlog.get("ingress.publisher")

DRAIN_BATCH = 500  # entries per drain round
DRAIN_ACK_TIMEOUT = 30.0
PROBE_EVERY = 5.0  # seconds between metadata round trips that tell /readyz whether Kafka answers


# After a broker restart, batches that expired on our side leave the idempotent producer's sequence numbers out of
# step with the broker's, and every later send fails with one of these: only a new producer (new id) recovers.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                         InvalidProducerIdMapping, ProducerFenced)


class Unavailable(Exception):
    """Neither Kafka nor the spool could take the push: answer 503."""


class Publisher:
    """``publish`` a push's records; ``start``/``stop`` the producer, the drainer and the broker probe; ``ready``."""

    def __init__(self, settings: IngressSettings, spool: Spool | None) -> None:
        self.settings = settings
        self.producer: Any = None  # None until the first start succeeds; replaced by a renewal
        self.deadline = settings.ingress_ack_deadline
        self.batcher = Batcher(lambda: self.producer, self.deadline, settings.ingress_linger_ms / 1000)
        self.spool = spool
        self.broker_up = True
        self.broker_error: str | None = None
        self._starter: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._stopping = False

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
        batches: list[Batch] = []
        try:
            batches = await self._add(records)
            if len(batches) == 1:
                await asyncio.shield(batches[0].answer)
            else:
                await asyncio.shield(asyncio.gather(*(b.answer for b in batches)))
            self._mark_up()
            return "kafka"
        except Exception as error:  # deadline, connection, metadata: all mean "not durable in Kafka yet"
            self._mark_down(error)
            acked = [b.acked for b in batches]
            self._renew_if_fatal(error, acked)
            return await self._spool_instead(records, acked if batches else None, error)

    async def _add(self, records: list[Record]) -> list[Batch]:
        """The records into the batcher; the distinct batches that now hold them."""
        batcher = self.batcher
        batches: list[Batch] = []
        for record in records:
            partitions = batcher.partitions(record.topic) or await self._wait_partitions(record.topic)
            batch = batcher.add(record, partitions)
            if batch not in batches:
                batches.append(batch)
        return batches

    async def _wait_partitions(self, topic: str) -> list[int]:
        """Not in the producer's metadata yet (Kafka just started, or a first push): wait, within the deadline."""
        async with asyncio.timeout(self.deadline):
            return await self.batcher.wait_partitions(topic)

    async def _spool_instead(self, records: list[Record], acked: list[asyncio.Future[None]] | None,
                             error: BaseException) -> str:
        """``acked``: the Kafka futures of every record of the push, if all were handed to the producer."""
        metrics.BROKER_ERRORS.inc()
        for future in acked or ():
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
        """Every batch handed to the producer, then the producer stopped: it flushes what is still in flight."""
        self._stopping = True
        for task in (self._starter, self._probe, self._renewing, self._drainer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.batcher.flushed()  # then producer.stop() waits for their acks
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()

    async def _start(self) -> None:
        self.producer = await self._started_producer()
        self._mark_up()
        log.info("Kafka producer started", bootstrap=self.settings.kafka_bootstrap)
        if self.spool is not None:
            self._drainer = asyncio.create_task(self._drain_loop(), name="spool-drainer")

    async def _started_producer(self) -> Any:
        """A new producer, started: retried while Kafka is away, each attempt with a producer of its own."""
        delay = 0.5
        notice = Throttle()  # once, then at most once a minute: an outage is one line, not one per attempt
        while True:
            producer = make_producer(self.settings, client_suffix="-ingress", linger_ms=self.settings.ingress_linger_ms,
                                     max_batch_size=256 * 1024, partitioner=partitioner)
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

    def _renew_if_fatal(self, error: BaseException, futures: Sequence[asyncio.Future[Any]] = ()) -> None:
        fatal = isinstance(error, FATAL_PRODUCER_ERRORS) or any(
            f.done() and not f.cancelled() and isinstance(f.exception(), FATAL_PRODUCER_ERRORS) for f in futures)
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
        """Keep /readyz honest when no pushes arrive: a metadata round trip tells whether Kafka answers."""
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

    def _mark_up(self) -> None:
        if not self.broker_up:
            log.info("Kafka acknowledges again")
        self.broker_up = True
        self.broker_error = None

    def _mark_down(self, error: BaseException) -> None:
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

    # -- the drainer -----------------------------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        assert self.spool is not None
        spool = self.spool
        offset = 0
        current: int | None = None
        backoff = 0.2
        while not self._stopping:
            segment = spool.first_segment()
            if segment is None:
                await spool.backlog.wait()
                if spool.first_segment() is None:
                    await asyncio.sleep(0.01)
                continue
            if segment.seq != current:
                current, offset = segment.seq, 0
            entries = await spool.read(segment.seq, offset, DRAIN_BATCH)
            if not entries:
                finished = offset >= segment.size and (not spool.is_active(segment) or not spool.has_backlog)
                if finished and await spool.finish_segment(segment, offset):
                    current = None
                    continue
                await asyncio.sleep(0.01)
                continue
            try:
                await self._send_entries(entries)
            except Exception as error:
                self._mark_down(error)
                self._renew_if_fatal(error)
                metrics.BROKER_ERRORS.inc()
                log.warning("spool drain waiting for Kafka", error=repr(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            self._mark_up()
            offset = entries[-1].end
            spool.drained(len(entries))
            metrics.SPOOL_DRAINED.inc(len(entries))

    async def _send_entries(self, entries: list[Any]) -> None:
        """Send every entry not already acknowledged by its original attempt; all acks or an exception."""
        assert self.spool is not None
        batcher = self.batcher
        acked: dict[int, asyncio.Future[None]] = {}
        async with asyncio.timeout(DRAIN_ACK_TIMEOUT):
            for entry in entries:
                original = self.spool.attachments.pop((entry.seq, entry.offset), None)
                if original is not None and await _all_acked(original):
                    continue
                for r in entry.records:
                    batch = batcher.add(r, batcher.partitions(r.topic) or await self._wait_partitions(r.topic))
                    acked[id(batch)] = batch.acked
                    metrics.count_record(r.topic)
            if acked:
                await asyncio.gather(*acked.values())


async def _all_acked(futures: list[asyncio.Future[Any]]) -> bool:
    # Shielded: a drain timeout must not cancel the original sends (their outcome is still worth knowing).
    results = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
    return not any(isinstance(result, BaseException) for result in results)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

