"""What a simulated call is: the options that decide the calls of a run, and the call with its status events,
CDR and recording.

Where the platform's behaviour is unconfirmed (``""`` vs absent times, per-leg status events in callbacks) an
option chooses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCENARIOS = ("callback", "notify", "verify")
SERVICE_TYPE = {"callback": "002", "notify": "001", "verify": "001"}
DEFAULT_MIX = {"callback": 0.6, "notify": 0.3, "verify": 0.1}
DEFAULT_APP_KEY = "sim-app-key"
WAV_BYTES_PER_SECOND = 8000  # A-Law, 8 kHz, mono, 64 kbps
WAV_HEADER_BYTES = 58  # RIFF + fmt(18, non-PCM) + fact + data headers, see wav.py
RELEASED = "The user releases the call."
FILES_PATH = "/files/"  # where the recording API serves files (the 301 Location and url-only recordings)
# Why a call has no recording (Call.no_recording); a recorded call has None.
NOT_CALLBACK, NOT_ASKED, UNANSWERED, UNDER_3S = "not a voice callback", "not asked", "not answered", "under 3 s"


@dataclass(frozen=True)
class CallOptions:
    """Everything that decides the generated calls. Equal options → equal calls."""

    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    rate: float = 10.0  # calls per simulated second
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    app_keys: tuple[str, ...] = (DEFAULT_APP_KEY,)  # calls are spread over the apps in turn
    sp_id: str = "sim_sp_001"
    answer_share: float = 0.75  # callee answers (per leg for callbacks: A 0.9, B this)
    short_share: float = 0.12  # answered calls with a talk time under 3 s
    long_share: float = 0.08  # answered callbacks of 10–60 minutes
    platform_failure_share: float = 0.01
    record_share: float = 0.5  # callbacks asking for a recording (recordFlag in the click2Call request)
    url_only_share: float = 0.1  # recorded CDRs carrying only recordFileDownloadUrl, no recordDomain/bucket
    missing_share: float = 0.0  # recorded CDRs whose file the recording API does not have (404 1012007)
    recording_domain: str = "record-sim.huaweicaas.com"
    recording_bucket: str = "sim-voice-record"
    recording_url_base: str = "http://127.0.0.1:18080/files/"  # where url-only recordings are downloaded from
    recording_max_bytes: int = 1 << 20  # cap on the simulated file size (0 = real size, 8000 B/s of talk)
    empty_times: bool = False  # UNCONFIRMED: times of legs that did not happen as "" instead of absent
    per_leg_status: bool = True  # UNCONFIRMED: callback status events for leg A and leg B (else leg A only)
    double_space_share: float = 0.0  # times with two spaces between date and time, as old platform versions did
    collect_share: float = 0.5  # notifications that collect digits (collectInd ≠ 0)


@dataclass(frozen=True)
class Recording:
    file_name: str
    domain: str | None  # None: the CDR carries only recordFileDownloadUrl
    size: int
    missing: bool


@dataclass(frozen=True)
class StatusEvent:
    at: float  # simulated POSIX time; the body's ``timestamp`` is this second
    body: dict[str, Any]

    @property
    def event_type(self) -> str:
        return str(self.body["eventType"])


@dataclass(frozen=True)
class Call:
    index: int
    scenario: str
    outcome: str  # "answered", "short", "long" or a Failure.kind
    session_id: str
    app_key: str
    start: float
    end: float  # the disconnect's time, = the CDR's callEndTime
    status: tuple[StatusEvent, ...]  # in the call's own order (timestamps never decrease)
    fee: dict[str, Any]
    recording: Recording | None
    no_recording: str | None = None  # why there is no recording (NOT_ASKED, UNDER_3S, ...); None when recorded

    @property
    def end_second(self) -> int:
        return math.floor(self.end)


def parse_mix(text: str) -> dict[str, float]:
    """``callback=0.6,notify=0.3,verify=0.1`` → normalised weights (unknown scenario or bad weight: ValueError)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SCENARIOS:
            raise ValueError(f"mix item {part.strip()!r}: use callback=W,notify=W,verify=W")
        weight = float(value)
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"mix weight of {name} must be a non-negative number")
        weights[name] = weight
    return normalise_mix(weights)


def normalise_mix(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix needs at least one scenario with a positive weight")
    return {name: weights[name] / total for name in SCENARIOS if weights.get(name, 0) > 0}


def session_id_stem(session_id: str) -> str:
    """``1200_7_123_20260101000000@callenabler245.huaweicaas.com`` → ``1200_7_123_20260101000000``."""
    return session_id.partition("@")[0]
