"""Making a push durable: Kafka acks within a deadline, else the spool; and draining the spool back to Kafka.

A push's records are sent together and their acks awaited together. When the deadline passes first, the push goes
to the spool and the send is *not* cancelled: the spool entry keeps the pending futures, and the drainer, when it
reaches that entry, skips it if Kafka acknowledged it after all. Only a crash in between (or an ack that fails
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
from voicecall.ingress.parse import Record
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog

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
                 renew: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        self.producer = producer
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
        futures: list[asyncio.Future[Any]] = []
        if self.producer is None:
            return await self._spool_instead(records, futures, ConnectionError("Kafka producer not started"))
        try:
            async with asyncio.timeout(self.deadline):
                send = self.producer.send
                for r in records:
                    futures.append(await send(r.topic, r.value, key=r.key, headers=r.headers))
                if len(futures) == 1:
                    await asyncio.shield(futures[0])
                else:
                    await asyncio.shield(asyncio.gather(*futures))
            self._mark_up()
            return "kafka"
        except Exception as error:  # timeout, connection, metadata: all mean "not durable in Kafka yet"
            self._mark_down(error)
            self._renew_if_fatal(error, futures)
            return await self._spool_instead(records, futures, error)

    async def _spool_instead(self, records: list[Record], futures: list[asyncio.Future[Any]],
                             error: BaseException) -> str:
        metrics.BROKER_ERRORS.inc()
        for future in futures:
            future.add_done_callback(_consume_exception)
        if self.spool is None:
            raise Unavailable(f"Kafka: {error!r}; no spool") from error
        pending = futures if futures and len(futures) == len(records) else None
        try:
            await self.spool.append(records, attachment=pending)
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
        futures: list[asyncio.Future[Any]] = []
        send = self.producer.send
        async with asyncio.timeout(DRAIN_ACK_TIMEOUT):
            for entry in entries:
                original = self.spool.attachments.pop((entry.seq, entry.offset), None)
                if original is not None and await _all_acked(original):
                    continue
                for r in entry.records:
                    futures.append(await send(r.topic, r.value, key=r.key, headers=r.headers))
                    metrics.count_record(r.topic)
            if futures:
                await asyncio.gather(*futures)


async def _all_acked(futures: list[asyncio.Future[Any]]) -> bool:
    # Shielded: a drain timeout must not cancel the original sends (their outcome is still worth knowing).
    results = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
    return not any(isinstance(result, BaseException) for result in results)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

