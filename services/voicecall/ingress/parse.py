"""The pure core of the ingress: raw body bytes in → the Kafka records that must be durable, or a rejection.

No I/O here. The shell (``handlers.py``) reads the body, calls :meth:`Parser.parse`, makes the records durable and
answers with the outcome's status. Every path routes by ``eventType``: a push that reached the wrong one of
``/notify/status`` and ``/notify/fee`` is still kept (a lost status push is never re-sent by the platform).

Values are kept as received: orjson reads an integer beyond 64 bits as a float, which it would write back as
``1.8446744073709552e+19``. Such a float is the only way ``e+`` appears in a written number, so a record whose value
holds ``e+`` is made again from the body read with every integer exact (:func:`exact_loads`); other pushes pay one
search of their values for ``e+`` (sre's literal scan, about half the time of ``bytes.__contains__``). Every record
is checked against what the broker takes (:mod:`voicecall.ingress.limits`) when it is built.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from voicecall import huawei, topics
from voicecall.ingress import shapes
from voicecall.ingress.limits import Limits, record_size
from voicecall.runtime import cloudevents, deadletter, times
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

STATUS_EVENTS = frozenset({"callout", "alerting", "answer", "collectInfo", "disconnect"})
SOURCE = "/voicecall/ingress"
STAGE = "ingress"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"  # the top-level schemas/, linked into the package
_BOM = b"\xef\xbb\xbf"
# The CloudEvents headers (cloudevents.headers' names and order), the constant ones made once per process.
_SPEC, _CONTENT_TYPE = ("ce_specversion", cloudevents.SPECVERSION), ("content-type", cloudevents.CONTENT_TYPE)
_SOURCE, _FEE_TYPE = ("ce_source", SOURCE.encode()), ("ce_type", cloudevents.TYPE_FEE.encode())
_STATUS_TYPES = {event: ("ce_type", (cloudevents.TYPE_STATUS + event).encode()) for event in STATUS_EVENTS}
_status_type = _STATUS_TYPES.__getitem__
_ID, _TIME = "ce_id", "ce_time"


@dataclass(slots=True)
class Outcome:
    """``status`` 200, 400, 413 or 415; ``records`` must all be durable before the answer (a rejection's
    deadletter too)."""

    status: int
    records: list[Record]
    event_type: str | None = None
    reason: Reason | None = None  # None on success; the human detail goes to ``resultdesc`` and deadletter
    detail: str = "Success"
    session_ids: list[str] = field(default_factory=list)


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / name


def _load_schema(uri: str) -> Any:
    """Cross-file ``$ref``s resolve to the files next to each other (their ``$id``s share one base)."""
    return json.loads(schema_path(uri.rsplit("/", 1)[-1]).read_text(encoding="utf-8"))


def inline_refs(node: Any, root: dict[str, Any]) -> Any:
    """The schema with every ``$ref`` replaced by its target: the compiled validator then makes no calls per
    field (bench/RESULTS.md, Ingress)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref.startswith("#/$defs/"):
                target, scope = root["$defs"][ref[len("#/$defs/"):]], root
            else:
                target = scope = _load_schema(ref)
            merged = {k: v for k, v in target.items() if k not in ("$id", "$schema", "$defs")}
            merged.update({k: v for k, v in node.items() if k != "$ref"})
            return inline_refs(merged, scope)
        return {k: inline_refs(v, root) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline_refs(v, root) for v in node]
    return node


@cache
def validator(name: str) -> Any:
    """A fastjsonschema validator compiled once per process for ``schemas/<name>``."""
    schema = _load_schema(name)
    return fastjsonschema.compile(inline_refs(schema, schema))


# The documented time fields, and every other documented field (checked without a per-key loop).
_TIME_FIELDS = ("callInTime", "fwdStartTime", "fwdAlertingTime", "fwdAnswerTime", "callEndTime", "failTime",
                "callOutStartTime", "callOutAlertingTime", "callOutAnswerTime", "dynIVRStartTime", "recordStartTime",
                "timestamp")
_OTHER_FIELDS = frozenset((
    "sessionId", "direction", "spId", "appKey", "icid", "bindNum", "callerNum", "calleeNum", "fwdDisplayNum",
    "fwdDstNum", "fwdUnaswRsn", "ulFailReason", "sipStatusCode", "callOutUnaswRsn", "dynIVRPath", "recordFlag",
    "recordObjectName", "recordBucketName", "recordDomain", "recordFileDownloadUrl", "ttsPlayTimes",
    "ttsTransDuration", "serviceType", "hostName", "userData", "caller", "called", "stateCode", "stateDesc",
    "partyType", "digitInfo", *_TIME_FIELDS))


def _is_plain_time(value: str) -> bool:
    # The usual "yyyy-MM-dd HH:mm:ss": nothing to normalise, and no split/join to pay.
    return len(value) == 19 and value[10] == " " and value.count(" ") == 1


def _canonical(record: dict[str, Any]) -> dict[str, Any]:
    """Times with their whitespace normalised, so a re-push with ``"2016-12-26  01:19:46"`` gets the same id.

    Every key ending in ``Time`` (or ``timestamp``) counts as a time; documented ones are looked up directly and
    only undocumented keys are scanned. Copies only when a time actually changes.
    """
    keys = [k for k in _TIME_FIELDS if k in record]
    keys.extend(k for k in record.keys() - _OTHER_FIELDS if k.endswith("Time"))
    out: dict[str, Any] | None = None
    for key in keys:
        value = record[key]
        if value.__class__ is str and not _is_plain_time(value):
            normal = huawei.normalise_time(value)
            if normal != value:
                if out is None:
                    out = dict(record)
                out[key] = normal
    return out if out is not None else record


# sre finds a literal of two bytes three to four times faster than ``bytes.__contains__`` (bench/RESULTS.md)
_space_before = re.compile(rb" [ \"]").search  # two spaces, or a space that ends a string
_space_after_quote = re.compile(rb'" ').search  # a space that starts a string


def _plain(canon: bytes) -> bool:
    """Whether no string in the written record changes under :func:`huawei.normalise_time`: printable ASCII
    (orjson escapes control characters with a backslash; other whitespace is not ASCII), no space at either end of
    a string (written compactly, a space touches a quote only there) and no two spaces in a row."""
    return (canon.isascii() and b"\\" not in canon and _space_before(canon) is None
            and _space_after_quote(canon) is None)


def content_id(record: dict[str, Any], event_type: str = "") -> str:
    """A deterministic ``ce_id``: a hash of the canonical content (sorted keys, normalised times).

    Usually the record as written is already canonical (:func:`_plain`) and is hashed as it is; otherwise its times
    are normalised first. Both give the same bytes, so the id does not depend on the path (a test holds them to it).
    """
    canon = orjson.dumps([event_type, record], option=orjson.OPT_SORT_KEYS)
    if not _plain(canon):
        canon = orjson.dumps([event_type, _canonical(record)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canon).hexdigest()[:32]


@lru_cache(maxsize=4096)
def _iso_time(value: str) -> str | None:
    try:
        moment = huawei.parse_time(value)
    except huawei.BadTime:
        return None
    return times.iso_z(moment) if moment else None


def event_time(value: object, fallback: str) -> str:
    """``ce_time`` from a Huawei UTC time, or ``fallback`` (the receive time) when there is none or it is odd.

    Cached: the times of a burst of pushes repeat (one-second resolution), and datetime formatting costs µs.
    """
    if not isinstance(value, str):
        return fallback
    return _iso_time(value) or fallback


class _Inexact(Exception):
    """A record's value holds a number written with an exponent: perhaps an integer orjson could not keep."""


_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson reads as an integer
_exponent = re.compile(rb"e\+").search


def _exact_int(text: str) -> Any:
    if len(text) < 19:
        return int(text)
    if len(text) <= 21 and _INT_MIN <= (number := int(text)) <= _INT_MAX:
        return number
    return orjson.Fragment(text.encode())  # written back digit for digit


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def exact_loads(body: bytes) -> Any:
    """JSON with every integer exactly as written (only called for a body orjson has already read)."""
    return json.loads(body.decode("utf-8"), parse_int=_exact_int, parse_constant=_no_constant)


def _schema_error(validate: Any, doc: Any) -> str | None:
    """What the JSON Schema finds wrong with ``doc``, or None when it accepts it."""
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException as error:
        message = str(error.message)
        return "body" + message[4:] if message.startswith("data") else message
    return None


class Parser:
    """Holds what does not change per request: topic names and the compiled validators."""

    def __init__(self, settings: CommonSettings, limits: Limits | None = None) -> None:
        self.status_topic = topics.name(settings, "status.raw")
        self.fee_topic = topics.name(settings, "fee.raw")
        self.deadletter_topic = topics.name(settings, "deadletter")
        self.limits = limits or Limits([self.status_topic, self.fee_topic], self.deadletter_topic,
                                       settings.deadletter_max_payload)
        self._status = validator("status_push.schema.json")
        self._fee = validator("fee_push.schema.json")

    def parse(self, body: bytes, *, received: str, push_id: str, origin: dict[str, Any]) -> Outcome:
        """One push → its records (200) or a rejection with its deadletter record (400, 413)."""
        try:
            try:
                return self._parse(body, received, push_id, origin, exact=False)
            except _Inexact:
                return self._parse(body, received, push_id, origin, exact=True)
        except orjson.JSONEncodeError as error:
            # orjson reads 1024 levels of nesting but writes only 254: such a body is kept as text instead.
            return self.reject(body, Reason.INVALID_SHAPE, f"body cannot be re-encoded as JSON: {error}", origin,
                               received, push_id)
        except RecursionError:  # read exactly (json module), nested deeper than Python recurses
            return self.reject(body, Reason.INVALID_SHAPE, "body is nested too deeply to keep its numbers exactly",
                               origin, received, push_id)

    def _parse(self, body: bytes, received: str, push_id: str, origin: dict[str, Any], exact: bool) -> Outcome:
        if body.startswith(_BOM):
            body = body[3:]
        try:
            doc = exact_loads(body) if exact else orjson.loads(body)
        except ValueError as error:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return self.reject(body, Reason.INVALID_UTF8, "body is not valid UTF-8", origin, received, push_id)
            return self.reject(body, Reason.NOT_JSON, f"body is not JSON: {error}", origin, received, push_id)
        if not isinstance(doc, dict):
            return self.reject(body, Reason.NOT_AN_OBJECT, "body is not a JSON object", origin, received, push_id, doc)
        event_type = doc.get("eventType")
        if event_type is None:
            return self.reject(body, Reason.MISSING_EVENT_TYPE, "eventType is missing", origin, received, push_id, doc)
        if not isinstance(event_type, str):
            return self.reject(body, Reason.INVALID_SHAPE, "eventType is not a string", origin, received, push_id, doc)
        extra = [(cloudevents.RECEIVED, received.encode()), (cloudevents.PUSH_ID, push_id.encode())]
        if event_type == "fee":
            return self._fee_push(body, doc, extra, origin, received, push_id, exact)
        if event_type in STATUS_EVENTS:
            return self._status_push(body, doc, event_type, extra, origin, received, push_id, exact)
        # Not ours to judge: keep it (200) and let a human look at it.
        outcome = self.reject(body, Reason.UNKNOWN_EVENT_TYPE, f"unknown eventType {event_type[:64]!r}", origin,
                              received, push_id, doc)
        outcome.status = 200
        outcome.event_type = event_type
        return outcome

    def _status_push(self, body: bytes, doc: dict[str, Any], event_type: str, extra: cloudevents.Headers,
                     origin: dict[str, Any], received: str, push_id: str, exact: bool) -> Outcome:
        info = doc.get("statusInfo")
        if info is None:
            return self.reject(body, Reason.MISSING_STATUS_INFO, "statusInfo is missing", origin, received, push_id,
                               doc)
        # the exact re-read (below) was checked as read by orjson; its exact numbers are no JSON Schema types
        if not exact and not shapes.fits(doc, shapes.StatusPush) and (error := _schema_error(self._status, doc)):
            return self.reject(body, Reason.INVALID_SHAPE, error, origin, received, push_id, doc)
        session_id: str = info["sessionId"]
        value = orjson.dumps(info)
        if not exact and _exponent(value):
            raise _Inexact
        key = session_id.encode()
        headers = [_SPEC, (_ID, content_id(info, event_type).encode()), _SOURCE, _status_type(event_type),
                   (_TIME, event_time(info.get("timestamp"), received).encode()), _CONTENT_TYPE, *extra]
        record = Record(self.status_topic, key, value, headers)
        if len(key) + len(value) >= self.limits.near and not self.limits.fits(record):
            return self._too_large(body, doc, record, origin, received, push_id)
        return Outcome(200, [record], event_type, session_ids=[session_id])

    def _fee_push(self, body: bytes, doc: dict[str, Any], extra: cloudevents.Headers, origin: dict[str, Any],
                  received: str, push_id: str, exact: bool) -> Outcome:
        if doc.get("feeLst") is None:
            return self.reject(body, Reason.MISSING_FEE_LIST, "feeLst is missing", origin, received, push_id, doc)
        # the exact re-read (below) was checked as read by orjson; its exact numbers are no JSON Schema types
        if not exact and not shapes.fits(doc, shapes.FeePush) and (error := _schema_error(self._fee, doc)):
            return self.reject(body, Reason.INVALID_SHAPE, error, origin, received, push_id, doc)
        records = []
        session_ids = []
        near = self.limits.near
        for fee in doc["feeLst"]:
            session_id: str = fee["sessionId"]
            value = orjson.dumps(fee)
            if not exact and _exponent(value):
                raise _Inexact
            key = session_id.encode()
            headers = [_SPEC, (_ID, content_id(fee).encode()), _SOURCE, _FEE_TYPE,
                       (_TIME, event_time(fee.get("callEndTime"), received).encode()), _CONTENT_TYPE, *extra]
            record = Record(self.fee_topic, key, value, headers)
            if len(key) + len(value) >= near and not self.limits.fits(record):
                return self._too_large(body, doc, record, origin, received, push_id)
            records.append(record)
            session_ids.append(session_id)
        return Outcome(200, records, "fee", session_ids=session_ids)

    def _too_large(self, body: bytes, doc: dict[str, Any], record: Record, origin: dict[str, Any], received: str,
                   push_id: str) -> Outcome:
        detail = (f"its {record.topic} record would take {record_size(record)} bytes; the broker takes at most "
                  f"{self.limits.largest[record.topic]}")
        return self.reject(body, Reason.TOO_LARGE, detail, origin, received, push_id, doc, status=413)

    def reject(self, body: bytes, reason: Reason, detail: str, origin: dict[str, Any], received: str,
               push_id: str, doc: Any = deadletter.UNPARSED, status: int = 400) -> Outcome:
        """A 400 (or 413, 415) whose raw body and reason go to deadletter, keyed like the push when it can be; the
        deadletter record is cut to what the deadletter topic takes."""
        record = deadletter.build(reason, STAGE, origin, topic=self.deadletter_topic, key=_session_key(doc),
                                  raw=body, detail=detail, parsed=doc, time=received,
                                  max_bytes=self.limits.deadletter_payload, received=received, push_id=push_id)
        event_type = doc.get("eventType") if isinstance(doc, dict) else None
        return Outcome(status, [record], event_type if isinstance(event_type, str) else None, reason, detail)


def _session_key(doc: Any) -> bytes | None:
    """The deadletter key is "as received": the push's sessionId when one is plainly there."""
    if not isinstance(doc, dict):
        return None
    info = doc.get("statusInfo")
    if isinstance(info, dict) and isinstance(info.get("sessionId"), str):
        return str(info["sessionId"]).encode()
    fees = doc.get("feeLst")
    if isinstance(fees, list) and fees and isinstance(fees[0], dict) and isinstance(fees[0].get("sessionId"), str):
        return str(fees[0]["sessionId"]).encode()
    return None
