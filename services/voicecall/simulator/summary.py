"""What one simulator run did, counted so that it reconciles with what the receiver stored.

``lost`` counts what the receiver lost: status events no copy of which was answered 200, and CDRs given up after
the last re-push. CDRs withheld on purpose (``--lost-cdr-share``) and recordings missing on purpose are not losses.
The calls that should end ``missing`` on the receiver are the calls whose ``disconnect`` it accepted and whose CDR
it never got, whatever the reason (withheld, given up, waiting for a re-push or not yet pushed when the run
stopped); they turn ``missing`` once the grace has passed after the disconnect's own time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_REPUSHES = 6
# Why a CDR did not reach the receiver (also the reasons a call ends `missing` there).
WITHHELD, GIVEN_UP, PENDING, NOT_PUSHED, DELIVERED = ("withheld", "given up", "pending re-push at stop",
                                                      "not pushed before stop", "delivered")


def _iso(moment: float | None) -> str:
    return "-" if moment is None else datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(counter.items())) or "-"


class CdrWatch:
    """Follows each call from its disconnect push to its CDR's fate; holds a call only while one of the two is
    still open."""

    def __init__(self) -> None:
        self._open: dict[str, list[Any]] = {}  # sessionId → [disconnect accepted?, disconnect time, CDR fate]
        self.reasons: Counter[str] = Counter()
        self.first: float | None = None
        self.last: float | None = None

    def disconnect(self, session_id: str, at: float, accepted: bool) -> None:
        entry = self._open.setdefault(session_id, [None, at, None])
        entry[0], entry[1] = accepted, at
        self._settle(session_id, entry)

    def cdr(self, session_id: str, fate: str) -> None:
        entry = self._open.setdefault(session_id, [None, 0.0, None])
        entry[2] = fate
        self._settle(session_id, entry)

    def _settle(self, session_id: str, entry: list[Any]) -> None:
        accepted, at, fate = entry
        if accepted is None or fate is None:
            return
        del self._open[session_id]
        if accepted and fate != DELIVERED:
            self.reasons[fate] += 1
            self.first = at if self.first is None else min(self.first, at)
            self.last = at if self.last is None else max(self.last, at)

    def close(self) -> None:
        """At the end of the run: accepted disconnects whose CDR never went out."""
        for session_id, entry in list(self._open.items()):
            if entry[0] and entry[2] is None:
                self.cdr(session_id, NOT_PUSHED)

    @property
    def count(self) -> int:
        return sum(self.reasons.values())


@dataclass
class Summary:
    seed: int
    start_time: str
    calls: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    apps: Counter[str] = field(default_factory=Counter)  # calls per appKey
    status_events: int = 0  # events pushed (a duplicated one once)
    status_pushes: int = 0  # HTTP requests (a duplicated event twice)
    status_delivered: int = 0  # requests answered 200
    status_lost: int = 0  # events no copy of which was answered 200
    status_late: int = 0
    status_duplicated: int = 0
    fee_pushes: int = 0  # first pushes; re-pushes are counted separately
    fee_records: int = 0
    repushes: int = 0
    fee_records_delivered: int = 0
    fee_records_given_up: int = 0
    fee_records_pending: int = 0
    fee_records_withheld: int = 0
    status_answers: Counter[str] = field(default_factory=Counter)
    fee_answers: Counter[str] = field(default_factory=Counter)
    signing: str = "off"
    signatures: Counter[str] = field(default_factory=Counter)  # what was sent: valid, bad-digest, ...
    cdr_grace: float = 7 * 3600.0
    missing: CdrWatch = field(default_factory=CdrWatch)
    recordings: int = 0  # calls with a recording (recordFlag 1 in their CDR), counted when the call starts
    recordings_missing: int = 0  # of those, files the recording API does not have, on purpose
    no_recording: Counter[str] = field(default_factory=Counter)  # calls without one, by why
    recording_cdrs: Counter[str] = field(default_factory=Counter)  # recordings by their CDR's fate
    recordings_missing_delivered: int = 0  # missing on purpose, CDR delivered (→ recording.failed)
    recordings_fetched: int | None = None  # files the pipeline downloaded whole (when serving recordings)
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
        return self.calls - self.fee_records - self.fee_records_withheld

    @property
    def recordings_in_progress(self) -> int:
        """Recorded calls whose CDR was not due yet when the run stopped."""
        return self.recordings - sum(self.recording_cdrs.values())

    @property
    def recordings_unfetched(self) -> int | None:
        if self.recordings_fetched is None:
            return None
        return self.recording_cdrs[DELIVERED] - self.recordings_missing_delivered - self.recordings_fetched

    def recordings_dict(self) -> dict[str, Any]:
        return {"in_cdrs": self.recordings, "cdr": dict(self.recording_cdrs),
                "cdr_not_due_at_stop": self.recordings_in_progress,
                "missing_on_purpose": self.recordings_missing,
                "missing_on_purpose_delivered": self.recordings_missing_delivered,
                "fetched": self.recordings_fetched, "not_fetched": self.recordings_unfetched,
                "none": dict(self.no_recording)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "start_time": self.start_time, "calls": self.calls,
            "scenarios": dict(self.scenarios), "outcomes": dict(self.outcomes), "apps": dict(self.apps),
            "status_events": self.status_events, "status_pushes": self.status_pushes,
            "status_delivered": self.status_delivered, "status_lost": self.status_lost,
            "status_late": self.status_late, "status_duplicated": self.status_duplicated,
            "fee_pushes": self.fee_pushes, "fee_records": self.fee_records,
            "repushes": self.repushes, "fee_records_delivered": self.fee_records_delivered,
            "fee_records_given_up": self.fee_records_given_up, "fee_records_pending": self.fee_records_pending,
            "fee_records_withheld": self.fee_records_withheld,
            "recordings": self.recordings, "recordings_missing": self.recordings_missing,
            "recordings_detail": self.recordings_dict(),
            "status_answers": dict(self.status_answers), "fee_answers": dict(self.fee_answers),
            "signing": self.signing, "signatures": dict(self.signatures),
            "missing_expected": {"calls": self.missing.count, "why": dict(self.missing.reasons),
                                 "cdr_grace": self.cdr_grace, "from": self._missing_at(self.missing.first),
                                 "until": self._missing_at(self.missing.last)},
            "lost": self.lost, "unfinished": self.unfinished, "elapsed": round(self.elapsed, 3),
            "max_lag": round(self.max_lag, 3),
            "stopped": self.stopped,
        }

    def _missing_at(self, disconnect: float | None) -> str | None:
        return None if disconnect is None else _iso(disconnect + self.cdr_grace)

    def progress_line(self) -> str:
        return (f"{self.elapsed:7.1f}s  calls {self.calls}  status {self.status_delivered}/{self.status_pushes}"
                f" (lost {self.status_lost})  fee pushes {self.fee_pushes} records {self.fee_records_delivered}"
                f"/{self.fee_records} re-pushes {self.repushes} given up {self.fee_records_given_up}"
                + (f"  behind by {self.max_lag:.1f}s" if self.max_lag >= 1 else ""))

    def text(self) -> str:
        lines = [
            f"simulated platform: seed {self.seed}, start time {self.start_time}, {self.elapsed:.1f} s"
            + (" (stopped)" if self.stopped else ""),
            f"  calls            {self.calls} ({_counts(self.scenarios)})"
            + (f"  apps {_counts(self.apps)}" if len(self.apps) > 1 else ""),
            f"  outcomes         {_counts(self.outcomes)}",
            f"  status pushes    {self.status_pushes} of {self.status_events} events (late {self.status_late}, "
            f"duplicated {self.status_duplicated}), accepted {self.status_delivered}, lost {self.status_lost}"
            f"  answers {_counts(self.status_answers)}",
            f"  fee pushes       {self.fee_pushes} with {self.fee_records} records, re-pushes {self.repushes}"
            f"  answers {_counts(self.fee_answers)}",
            f"  fee records      accepted {self.fee_records_delivered}, given up after {self.max_repushes} re-pushes "
            f"{self.fee_records_given_up}, pending at stop {self.fee_records_pending}, calls unfinished at stop "
            f"{self.unfinished}, withheld on purpose {self.fee_records_withheld}",
            f"  signatures       {self.signing}"
            + (f": {_counts(self.signatures)}" if self.signatures else ""),
            *self._missing_lines(),
            *self._recording_lines(),
            f"  receiver lost    {self.lost}",
        ]
        return "\n".join(lines)

    def _missing_lines(self) -> list[str]:
        watch = self.missing
        if not watch.count:
            return ["  cdr missing      0 calls should end missing (every accepted disconnect got its CDR)"]
        return [f"  cdr missing      {watch.count} calls should end missing (disconnect accepted, no CDR: "
                f"{_counts(watch.reasons)})",
                f"                   from {self._missing_at(watch.first)} until {self._missing_at(watch.last)} "
                f"(their disconnect + grace {duration_text(self.cdr_grace)}, by the receiver's clock)"]

    def _recording_lines(self) -> list[str]:
        cdrs = self.recording_cdrs
        not_delivered = Counter({WITHHELD: cdrs[WITHHELD], GIVEN_UP: cdrs[GIVEN_UP], PENDING: cdrs[PENDING],
                                 "call in progress at stop": self.recordings_in_progress})
        delivered = (f"                   of the delivered: missing on purpose {self.recordings_missing_delivered} "
                     f"(→ recording.failed)")
        if self.recordings_fetched is not None:
            delivered += (f", fetched whole {self.recordings_fetched} (→ recording.stored), not fetched at stop "
                          f"{self.recordings_unfetched}")
        return [
            f"  recordings       {self.recordings} made (missing on purpose {self.recordings_missing}): "
            f"CDR delivered {cdrs[DELIVERED]}, not delivered {sum(not_delivered.values())} "
            f"({_counts(+not_delivered)})",
            delivered,
            f"                   calls without a recording: {_counts(self.no_recording)}",
        ]
