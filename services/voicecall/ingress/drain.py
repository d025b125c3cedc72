"""The drainer: sends the spool on to Kafka, in order, each record once, never stuck behind one record.

It reads a window of entries, hands every record not yet acknowledged to the batcher and waits for the acks. What
is acknowledged is remembered per record, so a window that fails in part is sent again only in part: a spooled push
reaches Kafka once (the records a push's own attempt handed to Kafka before it was spooled count as sent, and are
waited for, not sent again). Only a crash between an ack and the window's end, or an ack that failed after Kafka
wrote the record, can write one twice (every record carries a deterministic ``ce_id`` for that).

A record Kafka refuses for good cannot wait for Kafka to change its mind: it is checked against the broker's limits
before it is sent, and a batch refused with a permanent error has its records sent again one per batch, so the one
record at fault is known; that record goes to the quarantine (:mod:`voicecall.ingress.quarantine`) with a
deadletter record, and the drain goes on. A well-framed spool entry that cannot be read is quarantined the same way.

``state`` is what ``/readyz`` reports: ``idle``, ``draining``, ``waiting-for-kafka`` (a transient error: Kafka away,
not enough replicas; the spool takes pushes meanwhile) or ``stuck`` (any other error: not ready).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from voicecall.ingress import metrics, parse
from voicecall.ingress.failures import is_permanent, is_transient
from voicecall.ingress.publisher import Publisher
from voicecall.ingress.spool import Entry, Segment, Spool, encode_entry, frame, segment_name
from voicecall.runtime import cloudevents, deadletter, logging as vlog, times
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

log = vlog.get("ingress.drain")

WINDOW = 500  # entries per drain round
ACK_TIMEOUT = 30.0

Key = tuple[int, int, int]  # segment, offset of the entry, index of the record in it


class _Isolate(Exception):
    pass


def _outcome(future: asyncio.Future[Any]) -> BaseException | None:
    if future.cancelled():
        return ConnectionError("send cancelled")
    return future.exception()


class Drainer:
    """``start`` once the app runs (it waits for the publisher's first producer), ``stop`` before the publisher;
    ``ready`` adds its state to the publisher's readiness."""

    def __init__(self, spool: Spool, publisher: Publisher) -> None:
        self.publisher = publisher
        self.spool = spool
        self._task: asyncio.Task[None] | None = None
        self.state = "idle"
        self.error: str | None = None
        self.done: set[Key] = set()  # acknowledged or quarantined, in the current window
        self.inflight: dict[Key, asyncio.Future[Any]] = {}  # handed to Kafka, outcome not known yet
        self.suspects: set[Key] = set()  # in a batch Kafka refused for good: sent again alone
        self.notices: list[tuple[Record, asyncio.Future[Any] | None]] = []  # deadletter records of quarantines

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="spool-drainer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def ready(self, ok: bool, detail: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """The publisher's readiness, and not ready while the drain is stuck (fails for any reason but Kafka being
        away): what the spool holds is then not on its way."""
        spool = detail.get("spool")
        if isinstance(spool, dict):
            spool["drain"] = self.state
            if self.error:
                spool["drain_error"] = self.error
        return ok and self.state != "stuck", detail

    def forget(self) -> None:
        """The window is done: nothing of it needs remembering."""
        self.done.clear()
        self.suspects.clear()
        self.inflight = {k: f for k, f in self.inflight.items() if not f.done()}

    async def run(self) -> None:
        await self.publisher.started.wait()
        spool = self.spool
        offset = 0
        current: int | None = None
        backoff = 0.2
        while True:
            try:
                segment = spool.first_segment()
                if segment is None:
                    self.state, self.error = "idle", None
                    if self.notices:
                        await self._resend_notices()
                        await asyncio.sleep(0.2)
                        continue
                    await spool.backlog.wait()
                    if spool.first_segment() is None:
                        await asyncio.sleep(0.01)
                    continue
                if segment.seq != current:
                    current, offset = segment.seq, 0
                    self.forget()
                entries = await spool.read(segment.seq, offset, WINDOW)
                if not entries:
                    if await self._finish(segment, offset):
                        current = None
                    else:
                        await asyncio.sleep(0.01)
                    continue
                await self._send(entries)
            except asyncio.CancelledError:
                raise
            except _Isolate:
                continue
            except Exception as error:
                self._failed(error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            self.state, self.error = "draining", None
            self.publisher.mark_up()
            offset = entries[-1].end
            spool.drained(len(entries))
            metrics.SPOOL_DRAINED.inc(len(entries))
            self.forget()

    async def _finish(self, segment: Segment, offset: int) -> bool:
        spool = self.spool
        finished = offset >= segment.size and (not spool.is_active(segment) or not spool.has_backlog)
        return finished and await spool.finish_segment(segment, offset)

    def _failed(self, error: BaseException, backoff: float) -> None:
        metrics.BROKER_ERRORS.inc()
        self.error = repr(error)
        if is_transient(error):
            self.state = "waiting-for-kafka"
            self.publisher.mark_down(error)
            self.publisher.renew_if_fatal(error)
            log.warning("spool drain waiting for Kafka", error=repr(error), retry_in=backoff)
        else:
            self.state = "stuck"
            log.error("spool drain failing", error=repr(error), retry_in=backoff)

    async def _send(self, entries: list[Entry]) -> None:
        """Every record of ``entries`` acknowledged or quarantined, or an exception (what got through is kept)."""
        publisher, batcher, limits = self.publisher, self.publisher.batcher, self.publisher.limits
        waits: list[tuple[Key, Entry, int, Record, asyncio.Future[Any]]] = []
        await self._resend_notices()
        for entry in entries:
            if entry.unreadable is not None:
                if (key := (entry.seq, entry.offset, -1)) not in self.done:
                    await self._quarantine_unreadable(entry)
                    self.done.add(key)
                continue
            original = self.spool.attachments.pop((entry.seq, entry.offset), None)
            for index, future in enumerate(original or ()):
                if future is not None:  # handed to the producer by the push's own attempt
                    self.inflight.setdefault((entry.seq, entry.offset, index), future)
            for index, record in enumerate(entry.records):
                key = (entry.seq, entry.offset, index)
                if key in self.done:
                    continue
                future = self.inflight.get(key)
                if future is None:
                    if not limits.fits(record):
                        await self._quarantine(entry, index, record, Reason.TOO_LARGE,
                                               f"the record takes more than the {limits.largest.get(record.topic)} "
                                               f"bytes {record.topic} takes")
                        self.done.add(key)
                        continue
                    partitions = batcher.partitions(record.topic) or await publisher.wait_partitions(record.topic)
                    future = self.inflight[key] = batcher.add(record, partitions, alone=key in self.suspects).acked
                waits.append((key, entry, index, record, future))
        if waits:
            await asyncio.wait({future for *_, future in waits}, timeout=ACK_TIMEOUT)
        failure: BaseException | None = None
        isolate = False
        for key, entry, index, record, future in waits:
            if not future.done():
                failure = failure or TimeoutError("Kafka did not acknowledge drained records in time")
                continue
            del self.inflight[key]
            error = _outcome(future)
            if error is None:
                self.done.add(key)
                metrics.count_record(record.topic)
            elif is_permanent(error) and key in self.suspects:  # sent alone: it is this record
                reason = Reason.TOO_LARGE if isinstance(error, MessageSizeTooLargeError) else \
                    Reason.UNDELIVERABLE
                await self._quarantine(entry, index, record, reason, f"Kafka refuses the record: {error!r}")
                self.done.add(key)
                if reason is Reason.TOO_LARGE:
                    publisher.relearn()
            elif is_permanent(error):
                self.suspects.add(key)
                isolate = True
            else:
                failure = failure or error
        await self._resend_notices()
        if failure is not None:
            raise failure
        if isolate:
            raise _Isolate

    async def _quarantine(self, entry: Entry, index: int, record: Record, reason: Reason, detail: str) -> None:
        await self.spool.quarantine.add(encode_entry([record], entry.time))
        self._notice(entry, reason, detail, {"topic": record.topic, "record": index}, record.key, record.value,
                     cloudevents.header(record.headers, "ce_time"))

    async def _quarantine_unreadable(self, entry: Entry) -> None:
        assert entry.unreadable is not None
        await self.spool.quarantine.add(frame(entry.unreadable))
        self._notice(entry, Reason.UNDELIVERABLE, "the spool entry cannot be read", {}, None, entry.unreadable, None)

    def _notice(self, entry: Entry, reason: Reason, detail: str, where: dict[str, Any], key: bytes | None,
                raw: bytes | None, when: str | None) -> None:
        metrics.QUARANTINED.labels(reason).inc()
        origin = {"spool": segment_name(entry.seq), "offset": entry.offset, **where}
        log.error("spooled record quarantined", reason=str(reason), detail=detail, quarantine=str(
            self.spool.quarantine.path), **origin)
        record = deadletter.build(reason, parse.STAGE, origin, topic=self.publisher.deadletter_topic, key=key, raw=raw,
                                  detail=detail, time=when if when and times.is_rfc3339(when) else times.now_iso(),
                                  max_bytes=self.publisher.limits.deadletter_payload,
                                  quarantine=self.spool.quarantine.path.name, quarantinedAt=times.now_iso())
        self.notices.append((record, None))

    async def _resend_notices(self) -> None:
        """Deadletter records of quarantined records: sent until acknowledged; refused for good, only logged."""
        batcher, pending = self.publisher.batcher, []
        for record, future in self.notices:
            if future is not None and future.done():
                error = _outcome(future)
                if error is None:
                    continue
                if is_permanent(error):
                    log.error("deadletter record of a quarantined record refused", error=repr(error))
                    continue
                future = None
            if future is None:
                try:
                    partitions = batcher.partitions(record.topic) or await self.publisher.wait_partitions(record.topic)
                except (TimeoutError, LookupError):
                    partitions = []
                if partitions:
                    future = batcher.add(record, partitions).acked
            pending.append((record, future))
        self.notices = pending
