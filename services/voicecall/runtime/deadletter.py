"""Deadletter records: what any stage could not take, with the reason, where it came from and the original data.

One builder for every stage (:func:`build`, :func:`for_record`), one list of reasons (:class:`Reason`; the same
list is the ``reason`` enum of schemas/deadletter.schema.json and the table in docs/downstream.md).

The value is ``{"reason", "stage", "origin", "payload", "detail", …}``: ``reason`` a code, ``detail`` the human
text. ``payload`` is the original data: JSON when it parsed, else text, else base64 (``"encoding": "base64"``); cut
with ``"truncated": true`` so that it takes at most ``max_bytes`` *as written* in the value (JSON escapes count:
200 KB of control characters are 1.2 MB once escaped) — a cut document is kept as text, since it no longer parses.
Key, detail and every origin field are cut too, so a whole deadletter record (key, value, headers) always takes at
most ``max_bytes + ENVELOPE`` bytes: a deadletter record fits the deadletter topic whatever it was built from.

``ce_id`` is derived from the stage, the reason and the origin — a consumed record's topic/partition/offset, or
the ingress path and a digest of the body — so a retried transaction or a re-sent push writes the same id again.
``ce_time`` is the consumed record's own time, or the receive time at the ingress.
"""

from __future__ import annotations

import base64
import hashlib
import re
from enum import StrEnum
from typing import Any

import orjson

from voicecall.runtime import cloudevents
from voicecall.runtime.record import Record


class Reason(StrEnum):
    """Every deadletter ``reason`` (part of the downstream contract: add, never rename)."""

    NOT_JSON = "not-json"
    INVALID_UTF8 = "invalid-utf8"
    NOT_AN_OBJECT = "not-an-object"
    EMPTY_VALUE = "empty-value"
    TOO_LARGE = "too-large"
    INVALID_SHAPE = "invalid-shape"
    MISSING_EVENT_TYPE = "missing-event-type"
    UNKNOWN_EVENT_TYPE = "unknown-event-type"
    MISSING_STATUS_INFO = "missing-status-info"
    MISSING_FEE_LIST = "missing-fee-list"
    MISSING_SESSION_ID = "missing-session-id"
    CONFLICTING_DUPLICATE = "conflicting-duplicate"
    BAD_SERVICE_TYPE = "bad-service-type"
    BAD_TIME = "bad-time"
    MISSING_END_TIME = "missing-end-time"
    END_BEFORE_ANSWER = "end-before-answer"
    DURATION_TOO_LONG = "duration-too-long"
    PROCESSING_ERROR = "processing-error"
    BAD_ENCODING = "bad-encoding"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNDELIVERABLE = "undeliverable"
    BAD_SIGNATURE = "bad-signature"


UNPARSED: Any = object()  # ``parsed`` not given: the raw bytes are all there is

MAX_KEY = 1024  # a longer key is cut: a deadletter key only spreads records over partitions
MAX_FIELD = 1024  # detail and each origin or extra field, as written
ENVELOPE = 16 * 1024  # bound of everything in a deadletter record but its payload: key, headers, reason, origin…
_EXPONENT = re.compile(rb"[0-9]e\+[0-9]")  # how orjson writes a float of 1e16 and more


def build(reason: Reason, stage: str, origin: dict[str, Any], *, topic: str, key: bytes | None,
          raw: bytes | None, detail: str, parsed: Any = UNPARSED, time: str | None = None,
          max_bytes: int = 512 * 1024, **extra: Any) -> Record:
    """The deadletter record (for ``topic``, the full deadletter topic name) of one rejected input; it takes at
    most ``max_bytes + ENVELOPE`` bytes in all."""
    if "offset" in origin:  # a consumed record: its position is unique
        position: tuple[object, ...] = (origin.get("topic"), origin.get("partition"), origin["offset"])
    else:  # a push: the client address is left out, the platform re-sends from any of its hosts
        position = (origin.get("path"), hashlib.sha256(raw or b"").hexdigest())
    origin = {name: _short(field) for name, field in origin.items()}
    document = value(reason, stage, origin, raw=raw, parsed=parsed, max_bytes=max_bytes, detail=_short(detail),
                     **{name: _short(field) for name, field in extra.items()})
    headers = cloudevents.headers(cloudevents.TYPE_DEADLETTER, f"/voicecall/{stage}",
                                  cloudevents.event_id(stage, reason, *position), time)
    return Record(topic, _cut_key(key), orjson.dumps(document, option=orjson.OPT_SORT_KEYS), headers)


def for_record(record: Any, reason: Reason, stage: str, topic: str, *, detail: str, parsed: Any = UNPARSED,
               max_bytes: int = 512 * 1024, **extra: Any) -> Record:
    """:func:`build` for a consumed record (an aiokafka ``ConsumerRecord``): origin topic/partition/offset, the
    record's key, value and time."""
    origin = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    return build(reason, stage, origin, topic=topic, key=record.key, raw=record.value, detail=detail,
                 parsed=parsed, time=cloudevents.record_time(record), max_bytes=max_bytes, **extra)


def value(reason: Reason, stage: str, origin: dict[str, Any], raw: bytes | None = None, parsed: Any = UNPARSED,
          max_bytes: int = 512 * 1024, **extra: Any) -> dict[str, Any]:
    """The deadletter value, from the raw bytes (and the parsed document when there is one); ``payload`` takes at
    most ``max_bytes`` as JSON."""
    record: dict[str, Any] = {"reason": reason, "stage": stage, "origin": origin}
    record.update(extra)
    if parsed is not UNPARSED:
        written = _written(parsed)
        if written is not None and len(written) <= max_bytes and (raw is None or len(raw) <= max_bytes):
            record["payload"] = parsed
            return record
        if raw is None:
            raw = written if written is not None else repr(parsed).encode()
    if raw is None:
        raw = b""
    cut = raw[:max_bytes]
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError as error:
        if len(raw) > max_bytes and error.start >= len(cut) - 3:  # the cut split a multi-byte character
            text = cut[: error.start].decode("utf-8", "replace")
        else:
            text = None
    if text is not None:
        text = _fit(text, max_bytes)
        record["payload"] = text
        kept = len(text.encode("utf-8", "surrogatepass"))
    else:
        kept = min(len(raw), max_bytes // 4 * 3)  # base64 needs no escaping: 4 characters per 3 bytes
        record["payload"] = base64.b64encode(raw[:kept]).decode()
        record["encoding"] = "base64"
    if kept < len(raw):
        record["truncated"] = True
        record["size"] = len(raw)
    return record


def _fit(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that takes at most ``max_bytes`` as a JSON string (between its quotes)."""
    limit = max_bytes + 2
    if len(orjson.dumps(text)) <= limit:
        return text
    # Every character takes 1 to 6 bytes once written (a control character as \u0001): the answer lies between.
    low, high = min(len(text), max_bytes // 6), min(len(text), max_bytes + 1)
    while high - low > 1:
        middle = (low + high) // 2
        if len(orjson.dumps(text[:middle])) <= limit:
            low = middle
        else:
            high = middle
    return text[:low]


def _cut_key(key: bytes | None) -> bytes | None:
    """``key`` cut to :data:`MAX_KEY` bytes, at a character boundary when it is UTF-8."""
    if key is None or len(key) <= MAX_KEY:
        return key
    cut = key[:MAX_KEY]
    for back in range(4):
        try:
            (kept := cut[:MAX_KEY - back]).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return kept
    return cut


def _short(field: Any) -> Any:
    """A detail or origin field cut to :data:`MAX_FIELD` bytes as written (an address from X-Forwarded-For, an
    error text: whatever a client could make long)."""
    if field.__class__ is str:
        return field if len(field) <= MAX_FIELD // 6 else _fit(field, MAX_FIELD)
    if field is None or isinstance(field, bool | int | float):
        return field
    written = _written(field)
    return field if written is not None and len(written) <= MAX_FIELD else _fit(repr(field), MAX_FIELD)


def _written(parsed: Any) -> bytes | None:
    """``parsed`` as JSON, or None, and the document is kept as its raw text: orjson reads 1024 levels of nesting
    but writes only 254, and reads an integer beyond 64 bits as a float it writes with an exponent — not the
    number received. Encoded one level down, as it will be inside the deadletter value."""
    try:
        written = orjson.dumps([parsed])[1:-1]
    except orjson.JSONEncodeError:
        return None
    return None if b"e+" in written and _EXPONENT.search(written) else written
