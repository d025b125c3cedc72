"""Reading the five inputs: each record becomes an :class:`Update` of one call, or a :class:`Rejected` with the
deadletter reason. Pure.

- ``status.raw``: the value is the push's ``statusInfo``; its ``eventType`` is in the ``ce_type`` header (the value's
  own ``eventType``, if any, stands in). Without a readable ``timestamp`` the event cannot be placed on the
  timeline: ``bad-time``.
- ``fee.unique``: the CDR: its numbers, ``recordFlag`` and times (ISO 8601 when readable, else as received; billing
  and the downloader reject unreadable ones themselves), ``appKey`` and ``serviceType``.
- ``billing``: the totals; ``recording.stored``: ``uri`` and ``sha256``; ``recording.failed``: ``reason``.

An input's time (what ``updatedAt`` folds) is the event's own time: the status ``timestamp``, else the record's
``ce_time`` (its Kafka timestamp without one), and never more than :data:`MAX_SKEW_MS` ahead of the Kafka timestamp,
so that one wrong clock cannot keep a call from expiring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall.calls import events as ev
from voicecall.calls.call import CDR_NUMBERS, CDR_TIMES
from voicecall.runtime import cloudevents, deadletter
from voicecall.runtime.deadletter import Reason

MAX_SKEW_MS = 3_600_000
STATUS, CDR, BILLING, STORED, FAILED = "status", "cdr", "billing", "stored", "failed"
BILLING_FIELDS = ("totalSeconds", "totalBilledMinutes", "amount", "currency", "ruleVersion")
_STATUS_TYPE = cloudevents.TYPE_STATUS.encode()


@dataclass(slots=True)
class Update:
    session_id: str
    kind: str
    data: Any
    input_ms: int
    app_key: str | None = None
    service_type: str | None = None


@dataclass(slots=True)
class Rejected:
    reason: Reason
    detail: str
    parsed: Any = deadletter.UNPARSED


def _bounded(moment_ms: int, record: ConsumerRecord) -> int:
    return min(moment_ms, int(record.timestamp) + MAX_SKEW_MS)


def _record_ms(record: ConsumerRecord) -> int:
    for name, raw in record.headers or ():
        if name == "ce_time" and raw:
            try:
                return _bounded(ev.epoch_ms(raw.decode()), record)
            except (ValueError, UnicodeDecodeError):
                break
    return int(record.timestamp)


def _event_type(record: ConsumerRecord, doc: dict[str, Any]) -> object:
    for name, raw in record.headers or ():
        if name == "ce_type" and raw and raw.startswith(_STATUS_TYPE):
            return raw[len(_STATUS_TYPE):].decode("utf-8", "replace")
    return doc.get("eventType")


def read(kind: str, record: ConsumerRecord) -> Update | Rejected:
    """One input record of ``kind`` (:data:`STATUS`, :data:`CDR`, …) → what it says about its call."""
    if record.value is None:
        return Rejected(Reason.EMPTY_VALUE, "the record has no value (a tombstone?)")
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as error:
        return Rejected(Reason.NOT_JSON, f"not JSON: {error}")
    if not isinstance(doc, dict):
        return Rejected(Reason.NOT_AN_OBJECT, f"a JSON object was expected, got {type(doc).__name__}", doc)
    session_id = doc.get("sessionId")
    if not isinstance(session_id, str) or not session_id.strip():
        return Rejected(Reason.MISSING_SESSION_ID, f"sessionId is missing or empty: {session_id!r}"[:200], doc)
    if kind == STATUS:
        return _status(record, doc, session_id)
    if kind == CDR:
        return _cdr(record, doc, session_id)
    if kind == BILLING:
        return _billing(record, doc, session_id)
    if kind == STORED:
        uri = ev.text(doc.get("uri"))
        if uri is None:
            return Rejected(Reason.INVALID_SHAPE, "a stored recording without uri", doc)
        return Update(session_id, STORED, {"status": "stored", "uri": uri, "sha256": ev.text(doc.get("sha256"))},
                      _record_ms(record))
    reason = ev.text(doc.get("reason")) or "unknown"
    return Update(session_id, FAILED, {"status": "failed", "reason": reason}, _record_ms(record))


def _status(record: ConsumerRecord, doc: dict[str, Any], session_id: str) -> Update | Rejected:
    event_type = _event_type(record, doc)
    if event_type not in ev.EVENT_ORDER:
        return Rejected(Reason.INVALID_SHAPE, f"not a status eventType: {event_type!r}"[:200], doc)
    raw = doc.get("timestamp")
    timestamp = ev.iso_time(raw) if isinstance(raw, str) else None
    if timestamp is None:
        return Rejected(Reason.BAD_TIME, f"the status push has no readable timestamp: {raw!r}"[:200], doc)
    entry, caller = ev.entry(str(event_type), timestamp, doc)
    return Update(session_id, STATUS, (entry, caller), _bounded(ev.epoch_ms(timestamp), record))


def _cdr(record: ConsumerRecord, doc: dict[str, Any], session_id: str) -> Update:
    cdr: dict[str, Any] = {"status": "received"}
    for name in CDR_NUMBERS:
        number = ev.text(doc.get(name))
        if number is not None:
            cdr[name] = number
    flag = doc.get("recordFlag")
    if flag is not None and flag != "":
        cdr["recordFlag"] = flag
    for name in CDR_TIMES:
        value = doc.get(name)
        if isinstance(value, str) and value.strip():
            cdr[name] = ev.iso_time(value) or value
    return Update(session_id, CDR, cdr, _record_ms(record), ev.text(doc.get("appKey")),
                  ev.text(doc.get("serviceType")))


def _billing(record: ConsumerRecord, doc: dict[str, Any], session_id: str) -> Update | Rejected:
    totals = {name: doc[name] for name in BILLING_FIELDS if name in doc}
    if not isinstance(totals.get("totalSeconds"), int) or not isinstance(totals.get("totalBilledMinutes"), int):
        return Rejected(Reason.INVALID_SHAPE, "a billing record without totalSeconds and totalBilledMinutes", doc)
    return Update(session_id, BILLING, totals, _record_ms(record), ev.text(doc.get("appKey")),
                  ev.text(doc.get("serviceType")))
