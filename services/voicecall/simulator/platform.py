"""The pusher: plays the timeline against real URLs with the platform's delivery rules and counts the outcome.

Status pushes are sent once, in the call's own order (unless made late or duplicated, see :mod:`.delivery`),
never re-pushed (an event no copy of which is answered 200 is lost). A fee push not answered 200, or answered
with a ``resultcode`` other than "0", is re-pushed with the same body up to ``max_repushes`` times,
``repush_interval`` apart (wall-clock seconds; the platform's 1 h by default); after the last failure its records
are given up (the real platform writes them to a file for customer service). Pushes are signed with their call's
app when signing is on (:mod:`.signing`).

Simulated time runs ``speed`` times faster than the wall clock (``speed=0``: as fast as the receiver answers); the
re-push interval is not scaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from voicecall import apps
from voicecall.simulator import delivery, pushes, signing
from voicecall.simulator.calls import generate
from voicecall.simulator.model import DEFAULT_APP_KEY, FILES_PATH, CallOptions, normalise_mix
from voicecall.simulator.recording_api import RecordingApi
from voicecall.simulator.summary import DELIVERED, GIVEN_UP, MAX_REPUSHES, PENDING, WITHHELD, Summary

PLAIN_HEADERS = {"Content-Type": pushes.CONTENT_TYPE}
DEFAULT_APP_SECRET = "sim-app-secret"  # used when no secret is given: pushes are then unsigned by default


def resolve_apps(given: Mapping[str, str | Sequence[str]] | None, app_key: str | None,
                 app_secret: str | None) -> tuple[apps.Apps, bool]:
    """The apps of a run (the apps mapping, plus the single key/secret) and whether any secret was given."""
    single = None if app_secret is None else (app_key or DEFAULT_APP_KEY, app_secret)
    resolved = apps.merged(apps.as_apps(given or {}), single)
    if not resolved:
        return {app_key or DEFAULT_APP_KEY: (DEFAULT_APP_SECRET,)}, False
    return resolved, True


class Platform:
    """A simulated Voice Call platform pushing to ``status_url``/``fee_url`` (or both kinds to ``notify_url``).

    ``calls`` or ``duration`` (simulated seconds of call starts) bound the run; with neither it runs until the
    ``stop`` event given to :meth:`run` is set. Calls are spread over the apps (``apps`` plus the single
    ``app_key``/``app_secret``); pushes are signed when ``sign_pushes`` is true, or, when it is None, when any
    secret was given. Extra keyword arguments are :class:`CallOptions` fields.
    """

    def __init__(self, status_url: str | None = None, fee_url: str | None = None, *,
                 notify_url: str | None = None, seed: int = 0, rate: float = 10.0, calls: int | None = None,
                 duration: float | None = None, mix: dict[str, float] | None = None,
                 repush_interval: float = 3600.0, max_repushes: int = MAX_REPUSHES,
                 sign_pushes: bool | None = None, push_digest: str = "newline", push_created_zone: str = "utc",
                 repush_bodies: str = "same", app_key: str | None = None, app_secret: str | None = None,
                 apps: Mapping[str, str | Sequence[str]] | None = None, bad_signature_share: float = 0.0,
                 replayed_nonce_share: float = 0.0, unsigned_share: float = 0.0, late_share: float = 0.0,
                 duplicate_share: float = 0.0, lost_cdr_share: float = 0.0, cdr_grace: float = 7 * 3600.0,
                 recording_api: RecordingApi | None = None, start_time: datetime | None = None,
                 speed: float = 1.0, concurrency: int = 64, push_timeout: float = 10.0,
                 on_progress: Callable[[Summary], None] | None = None, progress_interval: float = 1.0,
                 **call_options: Any) -> None:
        self.status_url = status_url or notify_url
        self.fee_url = fee_url or notify_url
        if not self.status_url or not self.fee_url:
            raise ValueError("give status_url and fee_url, or notify_url")
        if repush_bodies not in pushes.REPUSH_BODIES:
            raise ValueError(f"repush_bodies must be one of {pushes.REPUSH_BODIES}")
        if speed < 0 or concurrency < 1 or max_repushes < 0 or repush_interval < 0 or cdr_grace < 0:
            raise ValueError("speed, repush_interval, max_repushes and cdr_grace must be ≥ 0, concurrency ≥ 1")
        start = (start_time or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
        self.apps, secret_given = resolve_apps(apps, app_key, app_secret)
        self.signer: signing.Signer | None = None
        signs = secret_given if sign_pushes is None else sign_pushes
        # built even when not signing, so bad forms and shares are refused either way
        signer = signing.Signer(self.apps, form=push_digest, created_zone=push_created_zone,
                                bad_share=bad_signature_share, replay_share=replayed_nonce_share,
                                unsigned_share=unsigned_share, seed=seed)
        if signs:
            self.signer = signer
        if recording_api is not None:
            if not recording_api.base_url:
                raise ValueError("start the recording API before creating the Platform")
            call_options.setdefault("recording_url_base", recording_api.base_url + FILES_PATH)
            for key, secrets in self.apps.items():
                recording_api.apps.setdefault(key, secrets)
        self.options = replace(CallOptions(), seed=seed, start=start, rate=rate,
                               mix=normalise_mix(mix) if mix else CallOptions().mix, app_keys=tuple(self.apps),
                               **call_options)
        self.faults = delivery.Faults(late_share, duplicate_share, lost_cdr_share, seed)
        self.calls = calls
        self.duration = duration
        self.repush_interval = repush_interval
        self.max_repushes = max_repushes
        self.repush_bodies = repush_bodies
        self.recording_api = recording_api
        self.speed = speed
        self.concurrency = concurrency
        self.push_timeout = push_timeout
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.summary = Summary(seed=seed, start_time=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               max_repushes=max_repushes, cdr_grace=cdr_grace,
                               signing=f"{push_digest} digest, Created {push_created_zone}" if signs else "off")
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)  # requests in flight
        # Pushes handed out but not yet sent: keeps the generator from running far ahead of a slow receiver.
        self._backlog = asyncio.Semaphore(concurrency * 8)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_status: dict[str, asyncio.Task[None]] = {}
        self._missing_files: set[str] = set()  # sessionIds of recordings missing on purpose, until their CDR settles
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    async def run(self, stop: asyncio.Event | None = None) -> Summary:
        """Push every call's events; returns once every push (and re-push) is settled or ``stop`` is set."""
        if stop is not None:
            self._stop = stop
        began = time.monotonic()
        progress = asyncio.create_task(self._progress(began)) if self.on_progress else None
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.push_timeout)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                self._session = session
                await self._play(began)
                while self._tasks:
                    await asyncio.gather(*list(self._tasks))
        finally:
            self.summary.elapsed = time.monotonic() - began
            self.summary.stopped = self._stop.is_set()
            self.summary.missing.close()
            self.count_fetched()
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
        return self.summary

    def count_fetched(self) -> None:
        """Recordings the receiver has downloaded whole so far (again after lingering)."""
        if self.recording_api is not None:
            self.summary.recordings_fetched = len(self.recording_api.fetched)

    async def _play(self, began: float) -> None:
        origin = self.options.start.timestamp()
        emissions = pushes.timeline(generate(self.options, self.calls, self.duration), self.faults)
        for number, emission in enumerate(emissions):
            if self._stop.is_set():
                return
            if self.speed > 0:
                delay = began + (emission.at - origin) / self.speed - time.monotonic()
                if delay < 0:
                    self.summary.max_lag = max(self.summary.max_lag, -delay)
                elif delay > 0.001:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    if self._stop.is_set():
                        return
            if number % 256 == 0:
                await asyncio.sleep(0)  # let signals and answers in when nothing else makes us wait
            if isinstance(emission, pushes.CallStarted):
                self._started(emission)
            elif isinstance(emission, pushes.StatusPush):
                await self._backlog.acquire()
                previous = self._last_status.get(emission.session_id)
                task = self._spawn(self._status(emission, previous))
                self._last_status[emission.session_id] = task
                task.add_done_callback(functools.partial(self._forget, emission.session_id))
            elif isinstance(emission, pushes.FeePush):
                await self._backlog.acquire()
                self._spawn(self._fee(emission))
            else:
                self.summary.fee_records_withheld += len(emission.records)
                self._cdr_fate(emission.records, WITHHELD)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self._last_status.get(session_id) is task:
            del self._last_status[session_id]

    def _started(self, emission: pushes.CallStarted) -> None:
        call = emission.call
        summary = self.summary
        summary.calls += 1
        summary.scenarios[call.scenario] += 1
        summary.outcomes[call.outcome] += 1
        summary.apps[call.app_key] += 1
        recording = call.recording
        if recording is None:
            summary.no_recording[call.no_recording or "?"] += 1
            return
        summary.recordings += 1
        if recording.missing:
            summary.recordings_missing += 1
            self._missing_files.add(call.session_id)
        elif self.recording_api is not None:
            self.recording_api.add_file(recording.file_name, recording.size, domain=recording.domain,
                                        app_key=call.app_key)

    def _cdr_fate(self, records: Sequence[dict[str, Any]], fate: str) -> None:
        summary = self.summary
        for record in records:
            session_id = str(record["sessionId"])
            summary.missing.cdr(session_id, fate)
            if record.get("recordFlag") == 1:
                summary.recording_cdrs[fate] += 1
                if session_id in self._missing_files:
                    self._missing_files.discard(session_id)
                    if fate == DELIVERED:
                        summary.recordings_missing_delivered += 1

    async def _post(self, url: str, body: bytes, app_key: str) -> tuple[int | None, bytes, str]:
        """One POST → (HTTP status or None, answer body, answer key for the counters)."""
        assert self._session is not None
        headers = PLAIN_HEADERS
        if self.signer is not None:
            headers, kind = self.signer.headers(url, app_key)
            self.summary.signatures[kind] += 1
        target = self._urls.get(url)
        if target is None:
            target = self._urls[url] = URL(url)  # parsed once, not on every push
        try:
            async with self._session.post(target, data=body, headers=headers, allow_redirects=False) as answer:
                data = await answer.read()
                return answer.status, data, str(answer.status)
        except TimeoutError:
            return None, b"", "timeout"
        except aiohttp.ClientError:
            return None, b"", "connection-error"

    async def _status(self, push: pushes.StatusPush, previous: asyncio.Task[None] | None) -> None:
        summary = self.summary
        try:
            if previous is not None:
                # One call's pushes go out one after the other in the planned order; a failed earlier push does
                # not hold the later ones. The slot is taken only once the previous push is answered.
                with contextlib.suppress(Exception):
                    await previous
            copies = await asyncio.gather(*(self._status_copy(push) for _ in range(push.copies)))
            accepted = any(copies)
            summary.status_events += 1
            summary.status_late += push.late
            summary.status_duplicated += push.copies > 1
            if not accepted:
                summary.status_lost += 1
            if push.event_type == "disconnect":
                summary.missing.disconnect(push.session_id, push.event_at, accepted)
        finally:
            self._backlog.release()

    async def _status_copy(self, push: pushes.StatusPush) -> bool:
        async with self._slots:
            status, _, key = await self._post(str(self.status_url), push.body, push.app_key)
        self.summary.status_pushes += 1
        self.summary.status_answers[key] += 1
        if status == 200:
            self.summary.status_delivered += 1
        return status == 200

    async def _fee(self, push: pushes.FeePush) -> None:
        records = len(push.records)
        summary = self.summary
        summary.fee_pushes += 1
        summary.fee_records += records
        backlogged = True
        try:
            for attempt in range(self.max_repushes + 1):
                if attempt:
                    summary.repushes += 1
                async with self._slots:
                    payload = (pushes.repush_body(push.records, self.repush_bodies, attempt) if attempt else None)
                    status, body, key = await self._post(str(self.fee_url), payload or push.body, push.app_key)
                if backlogged:
                    self._backlog.release()  # a push waiting for its re-push holds no place in the backlog
                    backlogged = False
                accepted = status is not None and pushes.fee_accepted(status, body)
                summary.fee_answers[key if accepted or status != 200 else f"{key} resultcode≠0"] += 1
                if accepted:
                    summary.fee_records_delivered += records
                    self._cdr_fate(push.records, DELIVERED)
                    return
                if attempt == self.max_repushes:
                    summary.fee_records_given_up += records
                    self._cdr_fate(push.records, GIVEN_UP)
                    return
                if await self._stopped_within(self.repush_interval):
                    summary.fee_records_pending += records
                    self._cdr_fate(push.records, PENDING)
                    return
        finally:
            if backlogged:
                self._backlog.release()

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _progress(self, began: float) -> None:
        assert self.on_progress is not None
        while True:
            await asyncio.sleep(self.progress_interval)
            self.summary.elapsed = time.monotonic() - began
            self.on_progress(self.summary)


def random_seed() -> int:
    """A seed for runs that did not ask for one (printed, so the run can be repeated)."""
    return random.SystemRandom().randrange(1, 2**31)
