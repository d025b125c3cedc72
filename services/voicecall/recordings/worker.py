"""The Kafka shell: ``fee.unique`` → downloads → ``recording.stored`` / ``recording.failed``.

Each fee record that needs a download becomes a task; at most ``recordings_concurrency`` of them transfer at a
time, and a task waiting for its next retry holds no transfer slot, so one slow or failing recording never stops
its partition. Offsets are committed per partition only up to the lowest unfinished record, and a record's event
is produced before its offset can be committed: events are at-least-once (a crash between producing and
committing re-emits them; consumers dedupe by sessionId), recordings are stored once (the store skips a key that
already holds a complete file with its sidecar).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from botocore.exceptions import BotoCoreError, ClientError

from voicecall import topics
from voicecall.apps import AppRegistry
from voicecall.recordings import fetch, safety, select
from voicecall.recordings.config import RecordingsSettings
from voicecall.recordings.metrics import BYTES, DOWNLOADS, FAILED, IN_FLIGHT, LATENCY, RETRY_BACKLOG, SKIPPED
from voicecall.recordings.store import Store, Stored
from voicecall.recordings.tracker import OffsetTracker, backoff, wait_any
from voicecall.runtime import age, cloudevents, deadletter, kafka, logging as vlog, times, tracing
from voicecall.runtime.deadletter import Reason

SOURCE = "/voicecall/recordings"
RECORDING_LIFETIME = 7 * 86400.0  # the platform deletes recordings after 7 days: no point retrying past that

@dataclass
class PartitionState:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    committed: int | None = None


def stored_value(job: select.Fetch, stored: Stored, attempts: int) -> dict[str, Any]:
    return {"sessionId": job.session_id, "recordObjectName": job.record_object_name, "uri": stored.uri,
            "key": stored.key, "bytes": stored.bytes, "sha256": stored.sha256,
            "contentType": "audio/wav" if stored.key.endswith(".wav") else "application/octet-stream",
            "callEndTime": times.iso_z(job.call_end), "attempts": attempts, "storedAt": times.now_iso()}


def failed_value(session_id: str, record_object_name: str | None, reason: str, detail: str, attempts: int
                 ) -> dict[str, Any]:
    return {"sessionId": session_id, "recordObjectName": record_object_name, "reason": reason, "detail": detail,
            "attempts": attempts, "failedAt": times.now_iso()}


class Worker:
    def __init__(self, settings: RecordingsSettings, store: Store, session: aiohttp.ClientSession,
                 producer: Any, consumer: Any) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.producer = producer
        self.consumer = consumer
        self.signers = fetch.Signers(settings.huawei_base_url, AppRegistry.from_settings(settings))
        self.patterns = settings.allowed_hosts()
        self.slots = asyncio.Semaphore(settings.recordings_concurrency)
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.pending = 0
        self.key_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key → (lock, [users])
        self.capacity = asyncio.Event()
        self.log = vlog.get("recordings")
        self.topic_stored = topics.name(settings, "recording.stored")
        self.topic_failed = topics.name(settings, "recording.failed")
        self.topic_deadletter = topics.name(settings, "deadletter")
        self.group = kafka.group_id(settings, "recordings")

    # --- consuming ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        committer = asyncio.create_task(self._commit_loop(stop))
        try:
            paused = False
            while not stop.is_set():
                room = self.settings.recordings_max_pending - self.pending
                if room <= 0:
                    # Full: pause rather than stop polling, so the group does not evict us (max.poll.interval)
                    # while hours of retries keep every slot busy. Re-paused each time: a rebalance unpauses.
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                    self.capacity.clear()
                    # Counts as a poll. Paused partitions yield nothing; whatever does come back is still handled
                    # (dropping it would let a later commit skip it).
                    self._take(await self.consumer.getmany(timeout_ms=0))
                    await wait_any(self.capacity, stop, timeout=1.0)
                    continue
                if paused:
                    self.consumer.resume(*self.consumer.assignment())
                    paused = False
                self._take(await self.consumer.getmany(timeout_ms=300, max_records=min(room, 500)))
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            # Hand back what is in flight: its offsets stay uncommitted, the next owner fetches it again.
            await self._cancel(list(self.partitions))
            await self.commit()

    def _take(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            state = self.partitions.get(tp)
            if state is None:
                if tp not in self.consumer.assignment():
                    continue  # revoked while these were in the fetch buffer
                state = self.partitions.setdefault(tp, PartitionState())
            for record in records:
                self._handle(tp, state, record)

    def _handle(self, tp: TopicPartition, state: PartitionState, record: Any) -> None:
        state.tracker.add(record.offset)
        decision = _decide(record.value)
        if isinstance(decision, select.Skip):
            SKIPPED.labels(decision.reason).inc()
            if decision.reason != select.INVALID:
                self._finished(state, record)
                return
            self._spawn(tp, state, record, self._deadletter(record, decision))
        elif isinstance(decision, select.GiveUp):
            self._spawn(tp, state, record, self._emit_failed(
                decision.session_id, decision.record_object_name, decision.reason, "", 0))
        else:
            self._spawn(tp, state, record, self._fetch(decision))

    def _spawn(self, tp: TopicPartition, state: PartitionState, record: Any, work: Any) -> None:
        self.pending += 1

        async def run() -> None:
            with tracing.handling(record, self.group, "recordings"):  # log lines and events carry its trace
                await work
            self._finished(state, record)  # only reached once the work finished: cancelled work stays open

        task = asyncio.create_task(run())
        state.tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            state.tasks.discard(t)
            self.pending -= 1
            self.capacity.set()
            if not t.cancelled() and t.exception() is not None:
                self.log.error("recording task crashed", partition=tp.partition, offset=record.offset,
                               error=repr(t.exception()))

        task.add_done_callback(finished)

    @staticmethod
    def _finished(state: PartitionState, record: Any) -> None:
        """``record`` is done with: its offset may be committed, and its age is observed."""
        state.tracker.done(record.offset)
        age.AGE.observe("recordings", (record.headers,), time.time())

    # --- one recording --------------------------------------------------------------------------------------

    async def _fetch(self, job: select.Fetch) -> None:
        # Two records of one call (a re-push, a re-read after a crash) in flight together must not both download.
        lock, users = self.key_locks.setdefault(job.key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await self._fetch_one(job)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self.key_locks[job.key]

    async def _fetch_one(self, job: select.Fetch) -> None:
        started = time.time()
        deadline = min(started + self.settings.recordings_retry_deadline,
                       max(job.call_end.timestamp() + RECORDING_LIFETIME, started))
        attempts = failures = 0  # downloads tried; failed rounds (a store error can fail one before any download)
        while True:
            try:
                existing = await self.store.existing(job.key)
                if existing is not None:
                    DOWNLOADS.labels("already-stored").inc()
                    await self._emit(self.topic_stored, job.session_id, cloudevents.TYPE_RECORDING_STORED,
                                     stored_value(job, existing, attempts))
                    return
                attempts += 1
                stored = await self._attempt(job)
            except fetch.Permanent as error:
                self.log.warning("recording failed", sessionId=job.session_id, reason=error.reason,
                                 detail=error.detail, attempts=attempts)
                await self._emit_failed(job.session_id, job.record_object_name, error.reason, error.detail,
                                        attempts)
                return
            except Exception as error:
                # Store hiccups and even bugs retry until the deadline and then end on recording.failed: an
                # escaping exception would leave the offset unfinished, and the partition uncommittable, forever.
                if not isinstance(error, fetch.Transient | OSError | BotoCoreError | ClientError):
                    self.log.exception("unexpected error in a recording", sessionId=job.session_id)
                reason = error.reason if isinstance(error, fetch.FetchError) else type(error).__name__
                failures += 1
                delay = backoff(failures, self.settings.recordings_retry_initial, self.settings.recordings_retry_max)
                if time.time() + delay > deadline:
                    detail = str(error) if isinstance(error, fetch.FetchError) else f"{reason}: {error}"
                    await self._emit_failed(job.session_id, job.record_object_name, "retries-exhausted", detail,
                                            attempts)
                    return
                DOWNLOADS.labels("retry").inc()
                self.log.info("recording retry", sessionId=job.session_id, reason=reason, detail=str(error),
                              attempts=attempts, delay=round(delay, 2))
                RETRY_BACKLOG.inc()
                try:
                    await asyncio.sleep(delay)
                finally:
                    RETRY_BACKLOG.dec()
                continue
            DOWNLOADS.labels("stored").inc()
            BYTES.inc(stored.bytes)
            await self._emit(self.topic_stored, job.session_id, cloudevents.TYPE_RECORDING_STORED,
                             stored_value(job, stored, attempts))
            return

    async def _attempt(self, job: select.Fetch) -> Stored:
        async with self.slots:
            IN_FLIGHT.inc()
            begun = time.perf_counter()
            try:
                if job.record_domain and job.record_object_name:
                    url = await fetch.signed_download_url(self.session, self.signers.credentials(job.app_key),
                                                          job.record_object_name, job.record_domain)
                else:
                    assert job.download_url is not None
                    url = job.download_url
                refusal = safety.url_refusal(url, self.patterns)
                if refusal:
                    raise fetch.Permanent("forbidden-host", refusal)
                writer = await self.store.writer(job.key, {"sessionId": job.session_id})
                try:
                    stored = await fetch.download(self.session, url, writer, patterns=self.patterns,
                                                  max_bytes=self.settings.recordings_max_bytes)
                except BaseException:
                    await asyncio.shield(writer.abort())
                    raise
                LATENCY.observe(time.perf_counter() - begun)
                return stored
            finally:
                IN_FLIGHT.dec()

    # --- producing ------------------------------------------------------------------------------------------

    async def _emit_failed(self, session_id: str, record_object_name: str | None, reason: str, detail: str,
                           attempts: int) -> None:
        DOWNLOADS.labels("failed").inc()
        FAILED.labels(reason).inc()
        await self._emit(self.topic_failed, session_id, cloudevents.TYPE_RECORDING_FAILED,
                         failed_value(session_id, record_object_name, reason, detail, attempts))

    async def _emit(self, topic: str, key: str, ce_type: str, value: dict[str, Any]) -> None:
        await self._send(topic, key.encode(), orjson.dumps(value),
                         cloudevents.headers(ce_type, SOURCE, extra=tracing.current_headers()))

    async def _send(self, topic: str, key: bytes | None, value: bytes, headers: cloudevents.Headers) -> None:
        # The record's offset is committed only after this returns, so keep trying through a broker outage.
        delay = 0.5
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=key, headers=headers)
                return
            except KafkaError as error:
                self.log.warning("produce failed, retrying", topic=topic, error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _deadletter(self, record: Any, decision: select.Skip) -> None:
        problem = decision.problem or Reason.INVALID_SHAPE
        parsed: Any = deadletter.UNPARSED if problem in (Reason.EMPTY_VALUE, Reason.NOT_JSON) else \
            orjson.loads(record.value)
        dead = deadletter.for_record(record, problem, "recordings", self.topic_deadletter, detail=decision.detail,
                                     parsed=parsed, max_bytes=self.settings.deadletter_max_payload)
        await self._send(dead.topic, dead.key, dead.value or b"", dead.headers)

    # --- offsets and rebalances -----------------------------------------------------------------------------

    async def commit(self, only: list[TopicPartition] | None = None) -> None:
        offsets = {}
        for tp in only if only is not None else list(self.partitions):
            state = self.partitions.get(tp)
            if state is None:
                continue
            offset = state.tracker.committable()
            if offset is not None and offset != state.committed:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            self.log.warning("commit failed", error=repr(error))
            return
        for tp, offset in offsets.items():
            if tp in self.partitions:
                self.partitions[tp].committed = offset

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_any(stop, timeout=self.settings.recordings_commit_interval)
            await self.commit()

    async def _cancel(self, tps: list[TopicPartition]) -> None:
        tasks = [task for tp in tps if tp in self.partitions for task in self.partitions[tp].tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        """Stop the revoked partitions' work, commit what finished, and forget them."""
        mine = [tp for tp in revoked if tp in self.partitions]
        await self._cancel(mine)
        await self.commit(mine)
        for tp in mine:
            self.partitions.pop(tp, None)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.worker: Worker | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.worker is not None:
            await self.worker.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.worker is not None:
            for tp in assigned:
                self.worker.partitions.setdefault(tp, PartitionState())


def _decide(raw: bytes | None) -> select.Decision:
    if raw is None:
        return select.Skip(select.INVALID, "the record has no value (a tombstone?)", Reason.EMPTY_VALUE)
    try:
        return select.decide(orjson.loads(raw))
    except orjson.JSONDecodeError as error:
        return select.Skip(select.INVALID, f"not JSON: {error}", Reason.NOT_JSON)

