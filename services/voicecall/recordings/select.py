"""Which fee records have a recording to fetch, and from where — pure, no I/O.

Fetched: ``recordFlag`` 1 (also ``"1"``, ``true``, ``"true"``: the platform's exact form is UNCONFIRMED) on a voice
callback whose B leg talked at least 3 s (``callEndTime`` − ``fwdAnswerTime``); the platform makes no recording
for shorter calls. Everything else is skipped with a reason, without any request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voicecall import huawei
from voicecall.recordings import keys
from voicecall.runtime.deadletter import Reason

MIN_TALK_SECONDS = huawei.MIN_RECORDED_SECONDS

# Skip reasons (the label values of the skipped-records counter).
NO_RECORDING = "no-recording"
NOT_CALLBACK = "not-callback"
NOT_ANSWERED = "not-answered"
TOO_SHORT = "too-short"
INVALID = "invalid"  # also sent to deadletter (with ``Skip.problem`` as its reason): it cannot be judged


@dataclass(frozen=True)
class Fetch:
    session_id: str
    key: str
    call_end: datetime
    record_object_name: str | None
    record_domain: str | None  # with record_object_name: ask the record API for a download URL
    download_url: str | None  # otherwise: recordFileDownloadUrl
    app_key: str | None = None  # the CDR's appKey: the app whose secret signs the record API call


@dataclass(frozen=True)
class Skip:
    reason: str
    detail: str = ""
    problem: Reason | None = None  # the deadletter reason of an INVALID record


@dataclass(frozen=True)
class GiveUp:
    """A recording that should exist but cannot be located: reported on recording.failed at once."""

    session_id: str
    reason: str
    record_object_name: str | None


Decision = Fetch | Skip | GiveUp


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def decide(record: Any) -> Decision:
    if not isinstance(record, dict):
        return Skip(INVALID, "not a JSON object", Reason.NOT_AN_OBJECT)
    session_id = record.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        return Skip(INVALID, "no sessionId", Reason.MISSING_SESSION_ID)
    if not huawei.record_flag_set(record.get("recordFlag")):
        return Skip(NO_RECORDING)
    if not huawei.is_callback(record.get("serviceType")):
        return Skip(NOT_CALLBACK, f"serviceType {record.get('serviceType')!r}")
    try:
        answered = huawei.parse_time(record.get("fwdAnswerTime"))
        ended = huawei.parse_time(record.get("callEndTime"))
    except huawei.BadTime as error:
        return Skip(INVALID, str(error), Reason.BAD_TIME)
    if answered is None:
        return Skip(NOT_ANSWERED)
    if ended is None:
        return Skip(INVALID, "no callEndTime", Reason.MISSING_END_TIME)
    talk = (ended - answered).total_seconds()
    if talk < MIN_TALK_SECONDS:
        return Skip(TOO_SHORT, f"{talk:.0f} s")
    object_name = _text(record.get("recordObjectName"))
    domain = _text(record.get("recordDomain"))
    url = _text(record.get("recordFileDownloadUrl"))
    if not (object_name and domain) and not url:
        return GiveUp(session_id, "no-location", object_name)
    return Fetch(session_id=session_id, key=keys.object_key(session_id, ended, object_name), call_end=ended,
                 record_object_name=object_name, record_domain=domain if object_name else None,
                 download_url=None if (object_name and domain) else url, app_key=_text(record.get("appKey")))
