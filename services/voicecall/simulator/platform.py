"""The pusher: plays the timeline against real URLs with the platform's delivery rules and counts the outcome.

Status pushes are sent once, in state order per call, never re-pushed (a push not answered 200 is a lost event).
A fee push not answered 200, or answered with a ``resultcode`` other than "0", is re-pushed with the same body up
to ``max_repushes`` times, ``repush_interval`` apart (wall-clock seconds; the platform's 1 h by default); after the
last failure its records are given up (the real platform writes them to a file for customer service).

Simulated time runs ``speed`` times faster than the wall clock (``speed=0``: as fast as the receiver answers); the
re-push interval is not scaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from voicecall.runtime import times
from voicecall.simulator import pushes
from voicecall.simulator.calls import FILES_PATH, CallOptions, generate, normalise_mix
from voicecall.simulator.recording_api import RecordingApi

MAX_REPUSHES = 6
PLAIN_HEADERS = {"Content-Type": pushes.CONTENT_TYPE}


@dataclass
class Summary:
    """What happened in one run. ``lost`` counts what the receiver lost: unaccepted status events and CDRs given
    up after the last re-push. Records still waiting for a re-push when the run was stopped are ``pending``."""

    seed: int
    start_time: str
    calls: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    status_pushes: int = 0
    status_delivered: int = 0
    status_lost: int = 0
    fee_pushes: int = 0  # first pushes; re-pushes are counted separately
    fee_records: int = 0
    repushes: int = 0
    fee_records_delivered: int = 0
    fee_records_given_up: int = 0
    fee_records_pending: int = 0
    recordings: int = 0
    recordings_missing: int = 0
    status_answers: Counter[str] = field(default_factory=Counter)
    fee_answers: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    max_lag: float = 0.0  # furthest the pushes fell behind simulated time (wall seconds; receiver too slow)
    stopped: bool = False  # ended by the stop event rather than by running out of calls
    max_repushes: int = MAX_REPUSHES  # the policy in force, for the text summary

    @property
    def lost(self) -> int:
        return self.status_lost + self.fee_records_given_up

    @property
    def unfinished(self) -> int:
        """Calls whose CDR was never pushed because the run stopped before the call (or its second) ended."""
        return self.calls - self.fee_records

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "start_time": self.start_time, "calls": self.calls,
            "scenarios": dict(self.scenarios), "outcomes": dict(self.outcomes),
            "status_pushes": self.status_pushes, "status_delivered": self.status_delivered,
            "status_lost": self.status_lost, "fee_pushes": self.fee_pushes, "fee_records": self.fee_records,
            "repushes": self.repushes, "fee_records_delivered": self.fee_records_delivered,
            "fee_records_given_up": self.fee_records_given_up, "fee_records_pending": self.fee_records_pending,
            "recordings": self.recordings, "recordings_missing": self.recordings_missing,
            "status_answers": dict(self.status_answers), "fee_answers": dict(self.fee_answers),
            "lost": self.lost, "unfinished": self.unfinished, "elapsed": round(self.elapsed, 3),
            "max_lag": round(self.max_lag, 3),
            "stopped": self.stopped,
        }

    def progress_line(self) -> str:
        return (f"{self.elapsed:7.1f}s  calls {self.calls}  status {self.status_delivered}/{self.status_pushes}"
                f" (lost {self.status_lost})  fee pushes {self.fee_pushes} records {self.fee_records_delivered}"
                f"/{self.fee_records} re-pushes {self.repushes} given up {self.fee_records_given_up}"
                + (f"  behind by {self.max_lag:.1f}s" if self.max_lag >= 1 else ""))

    def text(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{key}: {value}" for key, value in sorted(counter.items())) or "-"

        lines = [
            f"simulated platform: seed {self.seed}, start time {self.start_time}, {self.elapsed:.1f} s"
            + (" (stopped)" if self.stopped else ""),
            f"  calls            {self.calls} ({counts(self.scenarios)})",
            f"  outcomes         {counts(self.outcomes)}",
            f"  status pushes    {self.status_pushes}, accepted {self.status_delivered}, lost {self.status_lost}"
            f"  answers {counts(self.status_answers)}",
            f"  fee pushes       {self.fee_pushes} with {self.fee_records} records, re-pushes {self.repushes}"
            f"  answers {counts(self.fee_answers)}",
            f"  fee records      accepted {self.fee_records_delivered}, given up after {self.max_repushes} re-pushes "
            f"{self.fee_records_given_up}, pending at stop {self.fee_records_pending}, calls unfinished at stop "
            f"{self.unfinished}",
            f"  recordings       {self.recordings} (missing on purpose {self.recordings_missing})",
            f"  receiver lost    {self.lost}",
        ]
        return "\n".join(lines)


class Platform:
    """A simulated Voice Call platform pushing to ``status_url``/``fee_url`` (or both kinds to ``notify_url``).

    ``calls`` or ``duration`` (simulated seconds of call starts) bound the run; with neither it runs until the
    ``stop`` event given to :meth:`run` is set. Extra keyword arguments are :class:`CallOptions` fields.
    """

    def __init__(self, status_url: str | None = None, fee_url: str | None = None, *,
                 notify_url: str | None = None, seed: int = 0, rate: float = 10.0, calls: int | None = None,
                 duration: float | None = None, mix: dict[str, float] | None = None,
                 repush_interval: float = 3600.0, max_repushes: int = MAX_REPUSHES, sign_pushes: bool = False,
                 push_signature: str = "newline", push_created_zone: str = "utc", repush_bodies: str = "same",
                 app_key: str = "sim-app-key", app_secret: str = "sim-app-secret",
                 recording_api: RecordingApi | None = None, start_time: datetime | None = None,
                 speed: float = 1.0, concurrency: int = 64, push_timeout: float = 10.0,
                 on_progress: Callable[[Summary], None] | None = None, progress_interval: float = 1.0,
                 **call_options: Any) -> None:
        self.status_url = status_url or notify_url
        self.fee_url = fee_url or notify_url
        if not self.status_url or not self.fee_url:
            raise ValueError("give status_url and fee_url, or notify_url")
        if push_signature not in pushes.PUSH_SIGNATURES:
            raise ValueError(f"push_signature must be one of {pushes.PUSH_SIGNATURES}")
        if repush_bodies not in pushes.REPUSH_BODIES:
            raise ValueError(f"repush_bodies must be one of {pushes.REPUSH_BODIES}")
        if push_created_zone not in pushes.PUSH_CREATED_ZONES:
            raise ValueError(f"push_created_zone must be one of {pushes.PUSH_CREATED_ZONES}")
        if speed < 0 or concurrency < 1 or max_repushes < 0 or repush_interval < 0:
            raise ValueError("speed, repush_interval and max_repushes must be ≥ 0, concurrency ≥ 1")
        start = (start_time or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
        if recording_api is not None:
            if not recording_api.base_url:
                raise ValueError("start the recording API before creating the Platform")
            call_options.setdefault("recording_url_base", recording_api.base_url + FILES_PATH)
        self.options = replace(CallOptions(), seed=seed, start=start, rate=rate,
                               mix=normalise_mix(mix) if mix else CallOptions().mix, app_key=app_key,
                               **call_options)
        self.calls = calls
        self.duration = duration
        self.repush_interval = repush_interval
        self.max_repushes = max_repushes
        self.signing = (app_key, app_secret) if sign_pushes else None
        self.push_signature = push_signature
        self.push_created_zone = push_created_zone
        self.repush_bodies = repush_bodies
        self.recording_api = recording_api
        self.speed = speed
        self.concurrency = concurrency
        self.push_timeout = push_timeout
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.summary = Summary(seed=seed, start_time=times.iso_z(start), max_repushes=max_repushes)
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)  # requests in flight
        # Pushes handed out but not yet sent: keeps the generator from running far ahead of a slow receiver.
        self._backlog = asyncio.Semaphore(concurrency * 8)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_status: dict[str, asyncio.Task[None]] = {}
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
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
        return self.summary

    async def _play(self, began: float) -> None:
        origin = self.options.start.timestamp()
        for number, emission in enumerate(pushes.timeline(generate(self.options, self.calls, self.duration))):
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
            else:
                await self._backlog.acquire()
                self._spawn(self._fee(emission))

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
        recording = call.recording
        if recording is None:
            return
        summary.recordings += 1
        if recording.missing:
            summary.recordings_missing += 1
        elif self.recording_api is not None:
            self.recording_api.add_file(recording.file_name, recording.size, domain=recording.domain)

    async def _post(self, url: str, body: bytes) -> tuple[int | None, bytes, str]:
        """One POST → (HTTP status or None, answer body, answer key for the counters)."""
        assert self._session is not None
        signing = self.signing
        headers = (pushes.push_headers(url, *signing, signature=self.push_signature,
                                       created_zone=self.push_created_zone) if signing else PLAIN_HEADERS)
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
        try:
            if previous is not None:
                # One call's statuses go out in state order; a failed earlier push does not hold the later ones.
                # The slot is taken only after the previous push is answered, so waiting calls hold none.
                with contextlib.suppress(Exception):
                    await previous
            async with self._slots:
                status, _, key = await self._post(str(self.status_url), push.body)
            self.summary.status_pushes += 1
            self.summary.status_answers[key] += 1
            if status == 200:
                self.summary.status_delivered += 1
            else:
                self.summary.status_lost += 1
        finally:
            self._backlog.release()

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
                    status, body, key = await self._post(str(self.fee_url), payload or push.body)
                if backlogged:
                    self._backlog.release()  # a push waiting for its re-push holds no place in the backlog
                    backlogged = False
                accepted = status is not None and pushes.fee_accepted(status, body)
                summary.fee_answers[key if accepted or status != 200 else f"{key} resultcode≠0"] += 1
                if accepted:
                    summary.fee_records_delivered += records
                    return
                if attempt == self.max_repushes:
                    summary.fee_records_given_up += records
                    return
                if await self._stopped_within(self.repush_interval):
                    summary.fee_records_pending += records
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

