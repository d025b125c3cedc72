"""The billing rules (reference §4), pure: a fee record (the parsed FeeInfo object) in, billed legs out.

- seconds of a leg = ``callEndTime`` − its answer time; billed minutes = ceil(seconds / 60) ("不足一分钟按一分钟");
- leg A is answered at ``callOutAnswerTime`` in every scenario; leg B at ``fwdAnswerTime`` for voice callback;
- a leg with no answer time (absent or ``""``) was not answered: 0 seconds, 0 minutes;
- a leg answered and hung up in the same second is answered with 0 seconds and therefore 0 minutes (the reference
  leaves 0-second legs UNCONFIRMED; the ceil rule gives 0, and we do not invent a minimum charge).

Anything that would make a number wrong rather than merely zero raises :class:`BadRecord` with a short reason
code (bounded, used as a metric label) and a detail for the deadletter record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voicecall import huawei
from voicecall.runtime.deadletter import Reason

# Bump when a rule below changes: billing records carry it, so a reprocessed record is recognisable.
RULES_VERSION = "1"

CALLBACK = "002"  # 语音回呼
NOTIFY = "001"  # 语音通知 and 语音验证码 ("语音播放")

# maxDuration is at most 1440 minutes, counted from the answer; one extra minute absorbs the platform's tear-down.
MAX_LEG_SECONDS = 24 * 3600 + 60

# Fields only a callback CDR carries ("仅语音回呼场景携带"): they identify a callback when serviceType is missing,
# as in the old demo CDR F2.
_CALLBACK_ONLY = ("fwdAnswerTime", "fwdStartTime", "fwdAlertingTime", "fwdDstNum", "fwdDisplayNum")

class BadRecord(ValueError):
    """A fee record that cannot be billed correctly, with the deadletter reason and its detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 6x (hot path)
class Leg:
    leg: str  # "A" or "B"
    answer_time: datetime | None
    end_time: datetime | None
    seconds: int
    billed_minutes: int

    @property
    def answered(self) -> bool:
        return self.answer_time is not None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 6x (hot path)
class Billed:
    session_id: str
    service_type: str | None  # as the record says it, normalised; None when absent
    callback: bool  # billed as a voice callback (two legs)
    inferred: bool  # callback-ness came from the fwd* fields, not from serviceType
    end_time: datetime | None
    legs: tuple[Leg, ...]
    answered: bool  # any leg answered
    total_seconds: int
    total_billed_minutes: int

    @property
    def effective_service_type(self) -> str | None:
        """The serviceType the tariff is looked up with: the record's, or ``002`` when inferred."""
        return CALLBACK if self.inferred else self.service_type


def billed_minutes(seconds: int) -> int:
    """Whole minutes, every started minute counted; integer arithmetic, so no float rounding at the edges."""
    return -(-seconds // 60)


def service_type(fee: dict[str, Any]) -> str | None:
    """``serviceType`` as a string; a number (a JSON encoder that dropped the quotes) becomes ``"002"``."""
    value = fee.get("serviceType")
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRecord(Reason.BAD_SERVICE_TYPE, f"serviceType is not a string: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise BadRecord(Reason.BAD_SERVICE_TYPE, f"serviceType is negative: {value!r}")
        return f"{value:03d}"
    return value.strip()


def _time(fee: dict[str, Any], field: str) -> datetime | None:
    try:
        return huawei.parse_time(fee.get(field))
    except huawei.BadTime as error:
        raise BadRecord(Reason.BAD_TIME, f"{field}: {error}") from None


def _leg(name: str, answer_field: str, answer: datetime | None, end: datetime | None) -> Leg:
    if answer is None:
        return Leg(name, None, end, 0, 0)
    if end is None:
        raise BadRecord(Reason.MISSING_END_TIME, f"leg {name} answered ({answer_field}) but callEndTime is missing")
    seconds = int((end - answer).total_seconds())
    if seconds < 0:
        raise BadRecord(Reason.END_BEFORE_ANSWER, f"leg {name}: callEndTime is {-seconds} s before {answer_field}")
    if seconds > MAX_LEG_SECONDS:
        raise BadRecord(Reason.DURATION_TOO_LONG, f"leg {name}: {seconds} s exceeds {MAX_LEG_SECONDS} s (24 h + 1 min)")
    return Leg(name, answer, end, seconds, billed_minutes(seconds))


def bill(fee: Any) -> Billed:
    """The billed legs of one fee record, or :class:`BadRecord`."""
    if not isinstance(fee, dict):  # what a JSON object parses to
        raise BadRecord(Reason.NOT_AN_OBJECT, f"a fee record is a JSON object, got {type(fee).__name__}")
    session_id = fee.get("sessionId")
    if not isinstance(session_id, str) or not session_id.strip():
        raise BadRecord(Reason.MISSING_SESSION_ID, f"sessionId is missing or empty: {session_id!r}")
    declared = service_type(fee)
    inferred = declared is None and any(fee.get(field) not in (None, "") for field in _CALLBACK_ONLY)
    end = _time(fee, "callEndTime")
    a = _leg("A", "callOutAnswerTime", _time(fee, "callOutAnswerTime"), end)
    if declared == CALLBACK or inferred:
        b = _leg("B", "fwdAnswerTime", _time(fee, "fwdAnswerTime"), end)
        return Billed(session_id, declared, True, inferred, end, (a, b),
                      a.answer_time is not None or b.answer_time is not None,
                      a.seconds + b.seconds, a.billed_minutes + b.billed_minutes)
    return Billed(session_id, declared, False, False, end, (a,), a.answer_time is not None, a.seconds,
                  a.billed_minutes)
