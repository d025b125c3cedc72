"""Deterministic call generator: the calls a Huawei Voice Call app would make, with their status events and CDR.

Pure: ``generate(options)`` yields :class:`Call` objects from ``random.Random(seed)`` and a fixed base time, so the
same options give the same calls, byte for byte. Every event of a call is an integer number of seconds after the
call's start, which keeps the durations the pipeline derives from the second-resolution time strings equal to the
ones decided here (a recording exists exactly when the B leg's string-derived talk time is ≥ 3 s).

Fields and codes follow ``shared/reference/huawei-voice-api.md`` (§1.4 status, §2.3 FeeInfo, appendix lists).
Where the reference says UNCONFIRMED (``""`` vs absent times, per-leg status events in callbacks) an option
chooses.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

SCENARIOS = ("callback", "notify", "verify")
SERVICE_TYPE = {"callback": "002", "notify": "001", "verify": "001"}
DEFAULT_MIX = {"callback": 0.6, "notify": 0.3, "verify": 0.1}
WAV_BYTES_PER_SECOND = 8000  # A-Law, 8 kHz, mono, 64 kbps
WAV_HEADER_BYTES = 58  # RIFF + fmt(18, non-PCM) + fact + data headers, see wav.py
RELEASED = "The user releases the call."
FILES_PATH = "/files/"  # where the recording API serves files (the 301 Location and url-only recordings)


@dataclass(frozen=True)
class Failure:
    """One way a leg fails: hang-up cause (stateCode), Q850 cause, 拆线点 (ulFailReason), SIP status."""

    kind: str
    state_code: int
    state_desc: str
    q850: int
    ul_fail_reason: int
    sip_status: int
    rings: bool  # whether an ``alerting`` event comes before the failure
    seconds: tuple[int, int]  # how long after callout (or alerting, when it rings) the leg ends


# Callee-side failures (notification, verification code, and leg B of a callback): codes 81xx "被叫…".
CALLEE_FAILURES = (
    Failure("no-answer", 8101, "The called party does not answer.", 19, 514, 480, True, (30, 60)),
    Failure("busy", 8102, "The called party is busy.", 17, 518, 486, False, (1, 4)),
    Failure("unreachable", 8103, "The called party is temporarily unreachable.", 20, 518, 480, False, (2, 8)),
    Failure("powered-off", 8104, "The called party is powered off.", 20, 518, 480, False, (1, 5)),
    Failure("suspended", 8105, "The called party's service is suspended.", 21, 518, 403, False, (1, 3)),
    Failure("not-exist", 8100, "The called number does not exist.", 1, 518, 404, False, (0, 2)),
    Failure("rejected", 8004, "The user hung up while ringing.", 21, 515, 603, True, (2, 15)),
    Failure("ring-timeout", 8003, "User ringing timed out.", 18, 514, 408, True, (45, 60)),
)
CALLEE_WEIGHTS = (30, 20, 12, 8, 3, 5, 15, 7)
# Caller-side failures (leg A of a callback): codes 81xx "主叫…".
CALLER_FAILURES = (
    Failure("caller-no-answer", 8107, "The calling party does not answer.", 19, 514, 480, True, (30, 60)),
    Failure("caller-busy", 8108, "The calling party is busy.", 17, 518, 486, False, (1, 4)),
    Failure("caller-unreachable", 8109, "The calling party is temporarily unreachable.", 20, 518, 480, False, (2, 8)),
    Failure("caller-powered-off", 8110, "The calling party is powered off.", 20, 518, 480, False, (1, 5)),
    Failure("caller-suspended", 8111, "The calling party's service is suspended.", 21, 518, 403, False, (1, 3)),
    Failure("caller-not-exist", 8106, "The calling number does not exist.", 1, 518, 404, False, (0, 2)),
)
CALLER_WEIGHTS = (35, 25, 15, 10, 5, 10)
# The platform refusing a call before anyone rings (rare).
PLATFORM_FAILURES = (
    Failure("voice-ports", 7109, "Insufficient voice ports.", 0, 0, 503, False, (0, 1)),
    Failure("app-rate-limited", 7002, "The app's call frequency is restricted.", 0, 0, 403, False, (0, 1)),
    Failure("internal-error", 8000, "Internal error.", 127, 517, 500, False, (0, 2)),
)


@dataclass(frozen=True)
class CallOptions:
    """Everything that decides the generated calls. Equal options → equal calls."""

    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    rate: float = 10.0  # calls per simulated second
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    app_key: str = "sim-app-key"
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
    at: float  # simulated POSIX time
    body: dict[str, Any]


@dataclass(frozen=True)
class Call:
    index: int
    scenario: str
    outcome: str  # "answered", "short", "long" or a Failure.kind
    session_id: str
    start: float
    end: float
    status: tuple[StatusEvent, ...]
    fee: dict[str, Any]
    recording: Recording | None

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


class _Clock:
    """Huawei time strings for one call: base POSIX second + integer offsets."""

    def __init__(self, start: float, double_space: bool) -> None:
        self.start = start
        self.sep = "  " if double_space else " "

    def at(self, offset: int) -> float:
        return self.start + offset

    def text(self, offset: int) -> str:
        return _huawei_time(math.floor(self.start) + offset, self.sep)


@functools.lru_cache(maxsize=8192)
def _huawei_time(second: int, sep: str) -> str:
    # many calls share seconds; strftime was the generator's largest single cost
    return datetime.fromtimestamp(second, UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def _number(rng: random.Random, prefix: str = "+86138") -> str:
    return prefix + "".join(rng.choices("0123456789", k=8))


class _Builder:
    """Collects one call's events and CDR fields in a fixed key order."""

    def __init__(self, clock: _Clock, session_id: str, user_data: str | None) -> None:
        self.clock = clock
        self.session_id = session_id
        self.user_data = user_data
        self.events: list[StatusEvent] = []

    def event(self, offset: int, event_type: str, **fields: Any) -> None:
        info: dict[str, Any] = {"sessionId": self.session_id, "timestamp": self.clock.text(offset)}
        info.update(fields)
        if self.user_data is not None:
            info["userData"] = self.user_data
        self.events.append(StatusEvent(self.clock.at(offset), {"eventType": event_type, "statusInfo": info}))


def _pick_failure(rng: random.Random, failures: tuple[Failure, ...], weights: tuple[int, ...]) -> Failure:
    return rng.choices(failures, weights=weights)[0]


def _talk(rng: random.Random, options: CallOptions, long_calls: bool = True) -> tuple[str, int]:
    roll = rng.random()
    if roll < options.short_share:
        return "short", rng.randint(0, 2)
    if long_calls and roll < options.short_share + options.long_share:
        return "long", rng.randint(600, 3600)
    return "answered", rng.randint(5, 300)


class Generator:
    """Iterates calls of one run. Holds the only ``random.Random``; draws happen in a fixed order per call."""

    def __init__(self, options: CallOptions) -> None:
        if options.rate <= 0:
            raise ValueError("rate must be positive")
        self.options = options
        self.mix = normalise_mix(options.mix)
        self.rng = random.Random(options.seed)
        self.base = options.start.timestamp()
        self.run_tag = self.rng.getrandbits(32)
        self.bind_num = "+8675528" + "".join(self.rng.choices("0123456789", k=4)) + "02"
        self.host = f"callenabler{self.rng.choice((245, 246))}.huaweicaas.com"

    def calls(self, count: int | None = None, duration: float | None = None) -> Iterator[Call]:
        """``count`` calls, or the calls starting within ``duration`` simulated seconds, or forever."""
        index = 0
        while count is None or index < count:
            offset = index / self.options.rate
            if duration is not None and duration > 0 and offset >= duration:
                return
            yield self.call(index)
            index += 1

    def call(self, index: int) -> Call:
        rng, options = self.rng, self.options
        start = self.base + index / options.rate
        scenario = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        double = options.double_space_share > 0 and rng.random() < options.double_space_share
        clock = _Clock(start, double)
        stamp = datetime.fromtimestamp(math.floor(start), UTC).strftime("%Y%m%d%H%M%S")
        prefix = {"callback": 1200, "notify": 1201, "verify": 1202}[scenario]
        session_id = f"{prefix}_{index}_{self.run_tag}_{stamp}@{self.host}"
        icid = f"{rng.getrandbits(128):032x}.{rng.randrange(10**10)}.{rng.randrange(10**7)}.{index}"
        user_data = f"sim-{rng.getrandbits(40):010x}" if rng.random() < 0.7 else None
        builder = _Builder(clock, session_id, user_data)
        fee: dict[str, Any] = {
            "direction": 0,
            "spId": options.sp_id,
            "appKey": options.app_key,
            "icid": icid,
            "bindNum": self.bind_num,
            "sessionId": session_id,
        }
        if scenario == "callback":
            outcome, end, recording = self._callback(rng, builder, fee, index)
        else:
            outcome, end = self._single_leg(rng, builder, fee, scenario)
            recording = None
        fee["serviceType"] = SERVICE_TYPE[scenario]
        fee["hostName"] = self.host
        if user_data is not None:
            fee["userData"] = user_data
        return Call(index, scenario, outcome, session_id, start, clock.at(end), tuple(builder.events), fee,
                    recording)

    # -- scenarios ---------------------------------------------------------------------------------------

    def _absent(self, fee: dict[str, Any], *names: str) -> None:
        if self.options.empty_times:
            for name in names:
                fee[name] = ""

    def _disconnect(self, builder: _Builder, offset: int, caller: str, called: str,
                    failure: Failure | None) -> None:
        code, desc = (0, RELEASED) if failure is None else (failure.state_code, failure.state_desc)
        builder.event(offset, "disconnect", caller=caller, called=called, stateCode=code, stateDesc=desc)

    def _fail_leg(self, rng: random.Random, builder: _Builder, offset: int, caller: str, called: str,
                  failure: Failure) -> tuple[int | None, int]:
        """Callout (already sent) → [alerting] → failure; returns (alerting offset, end offset)."""
        alerting = None
        if failure.rings:
            alerting = offset + rng.randint(1, 4)
            builder.event(alerting, "alerting", caller=caller, called=called)
            end = alerting + rng.randint(*failure.seconds)
        else:
            end = offset + rng.randint(*failure.seconds)
        return alerting, end

    def _failure_fields(self, fee: dict[str, Any], clock: _Clock, end: int, failure: Failure) -> None:
        fee["failTime"] = clock.text(end)
        fee["ulFailReason"] = failure.ul_fail_reason
        fee["sipStatusCode"] = failure.sip_status

    def _single_leg(self, rng: random.Random, builder: _Builder, fee: dict[str, Any],
                    scenario: str) -> tuple[str, int]:
        """Voice notification / verification code: the platform calls the callee, plays, hangs up."""
        options, clock = self.options, builder.clock
        callee = _number(rng)
        fee["callerNum"] = self.bind_num  # the displayNbr the SP set
        fee["calleeNum"] = callee
        builder.event(0, "callout", caller=self.bind_num, called=callee)
        failure: Failure | None = None
        if rng.random() < options.platform_failure_share:
            failure = rng.choice(PLATFORM_FAILURES)
        elif rng.random() >= options.answer_share:
            failure = _pick_failure(rng, CALLEE_FAILURES, CALLEE_WEIGHTS)
        if failure is not None:
            alerting, end = self._fail_leg(rng, builder, 0, self.bind_num, callee, failure)
            self._disconnect(builder, end, self.bind_num, callee, failure)
            fee["callEndTime"] = clock.text(end)
            self._failure_fields(fee, clock, end, failure)
            fee["callOutStartTime"] = clock.text(0)
            if alerting is not None:
                fee["callOutAlertingTime"] = clock.text(alerting)
            else:
                self._absent(fee, "callOutAlertingTime")
            self._absent(fee, "callOutAnswerTime")
            fee["callOutUnaswRsn"] = failure.q850
            fee["recordFlag"] = 0
            fee["ttsPlayTimes"] = 0
            fee["ttsTransDuration"] = 0
            return failure.kind, end
        alerting = rng.randint(1, 5)
        answer = alerting + rng.randint(2, 12)
        builder.event(alerting, "alerting", caller=self.bind_num, called=callee)
        builder.event(answer, "answer", caller=self.bind_num, called=callee)
        outcome, talk = _talk(rng, options, long_calls=False)  # a played message does not last 10 minutes
        ul_fail_reason = 0
        collects = scenario == "notify" and rng.random() < options.collect_share
        if outcome == "answered" and scenario == "verify":
            talk = rng.randint(10, 45)  # the code is read out a few times
        if collects and outcome != "short":
            if rng.random() < 0.8:
                pressed = rng.randint(3, max(3, min(talk, 40)))
                builder.event(answer + pressed, "collectInfo", digitInfo=rng.choice(("1", "2", "0", "9", "12")))
            else:
                ul_fail_reason = 100  # 放音收号时系统接收到的号码为空
        end = answer + talk
        self._disconnect(builder, end, self.bind_num, callee, None)
        fee["callEndTime"] = clock.text(end)
        fee["ulFailReason"] = ul_fail_reason
        fee["sipStatusCode"] = 0
        fee["callOutStartTime"] = clock.text(0)
        fee["callOutAlertingTime"] = clock.text(alerting)
        fee["callOutAnswerTime"] = clock.text(answer)
        fee["callOutUnaswRsn"] = 0
        fee["recordFlag"] = 0
        fee["ttsPlayTimes"] = rng.randint(1, 3)
        fee["ttsTransDuration"] = rng.randint(0, 2)
        return outcome, end

    def _callback(self, rng: random.Random, builder: _Builder, fee: dict[str, Any],
                  index: int) -> tuple[str, int, Recording | None]:
        """Voice callback: the platform calls A (callOut*), then B (fwd*); B's talk time decides the recording."""
        options, clock = self.options, builder.clock
        a_number, b_number = _number(rng), _number(rng)
        wants_recording = rng.random() < options.record_share
        per_leg = options.per_leg_status
        fee["callerNum"] = self.bind_num
        fee["calleeNum"] = a_number  # the first leg calls A
        builder.event(0, "callout", caller=self.bind_num, called=a_number)
        failure: Failure | None = None
        if rng.random() < options.platform_failure_share:
            failure = rng.choice(PLATFORM_FAILURES)
        elif rng.random() >= 0.9:
            failure = _pick_failure(rng, CALLER_FAILURES, CALLER_WEIGHTS)
        if failure is not None:
            alerting, end = self._fail_leg(rng, builder, 0, self.bind_num, a_number, failure)
            self._disconnect(builder, end, self.bind_num, a_number, failure)
            fee["callEndTime"] = clock.text(end)
            self._failure_fields(fee, clock, end, failure)
            fee["callOutStartTime"] = clock.text(0)
            if alerting is not None:
                fee["callOutAlertingTime"] = clock.text(alerting)
            else:
                self._absent(fee, "callOutAlertingTime")
            self._absent(fee, "callOutAnswerTime")
            fee["callOutUnaswRsn"] = failure.q850
            fee["recordFlag"] = 0
            return failure.kind, end, None
        a_alerting = rng.randint(1, 4)
        a_answer = a_alerting + rng.randint(2, 10)
        builder.event(a_alerting, "alerting", caller=self.bind_num, called=a_number)
        builder.event(a_answer, "answer", caller=self.bind_num, called=a_number)
        fwd_start = a_answer + rng.randint(0, 2)
        fee["fwdDisplayNum"] = self.bind_num
        fee["fwdDstNum"] = b_number
        fee["fwdStartTime"] = clock.text(fwd_start)
        fee["callOutStartTime"] = clock.text(0)
        fee["callOutAlertingTime"] = clock.text(a_alerting)
        fee["callOutAnswerTime"] = clock.text(a_answer)
        fee["callOutUnaswRsn"] = 0
        if per_leg:
            builder.event(fwd_start, "callout", caller=self.bind_num, called=b_number)
        b_failure = (_pick_failure(rng, CALLEE_FAILURES, CALLEE_WEIGHTS)
                     if rng.random() >= options.answer_share else None)
        if b_failure is not None:
            b_alerting, end = self._fail_leg(rng, builder, fwd_start, self.bind_num, b_number, b_failure) \
                if per_leg else self._silent_fail(rng, fwd_start, b_failure)
            self._disconnect(builder, end, self.bind_num, a_number, b_failure)
            if b_alerting is not None:
                fee["fwdAlertingTime"] = clock.text(b_alerting)
            else:
                self._absent(fee, "fwdAlertingTime")
            self._absent(fee, "fwdAnswerTime")
            fee["callEndTime"] = clock.text(end)
            fee["fwdUnaswRsn"] = b_failure.q850
            self._failure_fields(fee, clock, end, b_failure)
            fee["recordFlag"] = 0
            return b_failure.kind, end, None
        b_alerting = fwd_start + rng.randint(1, 4)
        b_answer = b_alerting + rng.randint(2, 15)
        if per_leg:
            builder.event(b_alerting, "alerting", caller=self.bind_num, called=b_number)
            builder.event(b_answer, "answer", caller=self.bind_num, called=b_number)
        outcome, talk = _talk(rng, options)
        end = b_answer + talk
        self._disconnect(builder, end, self.bind_num, a_number, None)
        fee["fwdAlertingTime"] = clock.text(b_alerting)
        fee["fwdAnswerTime"] = clock.text(b_answer)
        fee["callEndTime"] = clock.text(end)
        fee["fwdUnaswRsn"] = 0
        fee["ulFailReason"] = 0
        fee["sipStatusCode"] = 0
        recording = None
        missing = rng.random() < options.missing_share
        url_only = rng.random() < options.url_only_share
        # The platform makes no recording of calls under 3 s (reference §5.1).
        if wants_recording and talk >= 3:
            size = WAV_HEADER_BYTES + talk * WAV_BYTES_PER_SECOND
            if options.recording_max_bytes:
                size = min(size, max(options.recording_max_bytes, WAV_HEADER_BYTES))
            name = f"{session_id_stem(builder.session_id)}.wav"
            recording = Recording(name, None if url_only else options.recording_domain, size, missing)
            fee["recordFlag"] = 1
            fee["recordStartTime"] = clock.text(b_answer)
            if url_only:
                self._absent_strings(fee, "recordObjectName", "recordBucketName", "recordDomain")
                fee["recordFileDownloadUrl"] = options.recording_url_base + quote(name)
            else:
                fee["recordObjectName"] = name
                fee["recordBucketName"] = options.recording_bucket
                fee["recordDomain"] = options.recording_domain
        else:
            fee["recordFlag"] = 0
        return outcome, end, recording

    def _absent_strings(self, fee: dict[str, Any], *names: str) -> None:
        if self.options.empty_times:
            for name in names:
                fee[name] = ""

    @staticmethod
    def _silent_fail(rng: random.Random, fwd_start: int, failure: Failure) -> tuple[int | None, int]:
        alerting = fwd_start + rng.randint(1, 4) if failure.rings else None
        end = (alerting if alerting is not None else fwd_start) + rng.randint(*failure.seconds)
        return alerting, end


def session_id_stem(session_id: str) -> str:
    """``1200_7_123_20260101000000@callenabler245.huaweicaas.com`` → ``1200_7_123_20260101000000``."""
    return session_id.partition("@")[0]


def generate(options: CallOptions, count: int | None = None, duration: float | None = None) -> Iterator[Call]:
    return Generator(options).calls(count, duration)
