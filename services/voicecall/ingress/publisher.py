"""Making a push durable: Kafka acks within a deadline, else the spool; and draining the spool back to Kafka.

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
from collections.abc import Callable, Coroutine, Sequence
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
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog
from voicecall.runtime.record import Record

log = vlog.get("ingress.publisher")

DRAIN_BATCH = 500  # entries per drain round
DRAIN_ACK_TIMEOUT = 30.0


# After a broker restart, batches that expired on our side leave the idempotent producer's sequence numbers out of
# step with the broker's, and every later send fails with one of these: only a new producer (new id) recovers.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                         InvalidProducerIdMapping, ProducerFenced)


class Unavailable(Exception):
    """Neither Kafka nor the spool could take the push: answer 503."""


class Publisher:
    def __init__(self, producer: Any, spool: Spool | None, deadline: float,
                 renew: Callable[[], Coroutine[Any, Any, None]] | None = None, linger: float = 0.001) -> None:
        self.producer = producer
        self.batcher = Batcher(lambda: self.producer, deadline, linger)
        self.renew = renew  # replaces self.producer with a fresh one
        self._renewing: asyncio.Task[None] | None = None
        self.spool = spool
        self.deadline = deadline
        self.broker_up = True
        self.broker_error: str | None = None
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

    def _renew_if_fatal(self, error: BaseException, futures: Sequence[asyncio.Future[Any]] = ()) -> None:
        fatal = isinstance(error, FATAL_PRODUCER_ERRORS) or any(
            f.done() and not f.cancelled() and isinstance(f.exception(), FATAL_PRODUCER_ERRORS) for f in futures)
        if fatal and self.renew is not None and (self._renewing is None or self._renewing.done()):
            log.warning("producer out of step with the broker, starting a new one", error=repr(error))
            self._renewing = asyncio.create_task(self.renew(), name="producer-renew")

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

    # -- the drainer -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.spool is not None:
            self._drainer = asyncio.create_task(self._drain_loop(), name="spool-drainer")

    async def stop(self) -> None:
        self._stopping = True
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        await self.batcher.flushed()  # then producer.stop() waits for their acks

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

