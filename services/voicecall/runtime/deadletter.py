"""Deadletter records: what any stage could not take, with the reason, where it came from and the original data.

One builder for every stage (:func:`build`, :func:`for_record`), one list of reasons (:class:`Reason`; the same
list is the ``reason`` enum of schemas/deadletter.schema.json and the table in docs/downstream.md).

The value is ``{"reason", "stage", "origin", "payload", "detail", …}``: ``reason`` a code, ``detail`` the human
text. ``payload`` is the original data: JSON when it parsed, else text, else base64 (``"encoding": "base64"``); cut
at ``max_bytes`` with ``"truncated": true`` — a cut document is kept as text, since it no longer parses.

``ce_id`` is derived from the stage, the reason and the origin — a consumed record's topic/partition/offset, or
the ingress path and a digest of the body — so a retried transaction or a re-sent push writes the same id again.
``ce_time`` is the consumed record's own time, or the receive time at the ingress.
"""

from __future__ import annotations

import base64
import hashlib
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


UNPARSED: Any = object()  # ``parsed`` not given: the raw bytes are all there is


def build(reason: Reason, stage: str, origin: dict[str, Any], *, topic: str, key: bytes | None,
          raw: bytes | None, detail: str, parsed: Any = UNPARSED, time: str | None = None,
          max_bytes: int = 512 * 1024, **extra: Any) -> Record:
    """The deadletter record (for ``topic``, the full deadletter topic name) of one rejected input."""
    document = value(reason, stage, origin, raw=raw, parsed=parsed, max_bytes=max_bytes, detail=detail, **extra)
    if "offset" in origin:  # a consumed record: its position is unique
        position: tuple[object, ...] = (origin.get("topic"), origin.get("partition"), origin["offset"])
    else:  # a push: the client address is left out, the platform re-sends from any of its hosts
        position = (origin.get("path"), hashlib.sha256(raw or b"").hexdigest())
    headers = cloudevents.headers(cloudevents.TYPE_DEADLETTER, f"/voicecall/{stage}",
                                  cloudevents.event_id(stage, reason, *position), time)
    return Record(topic, key, orjson.dumps(document, option=orjson.OPT_SORT_KEYS), headers)


def for_record(record: Any, reason: Reason, stage: str, topic: str, *, detail: str, parsed: Any = UNPARSED,
               max_bytes: int = 512 * 1024, **extra: Any) -> Record:
    """:func:`build` for a consumed record (an aiokafka ``ConsumerRecord``): origin topic/partition/offset, the
    record's key, value and time."""
    origin = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    return build(reason, stage, origin, topic=topic, key=record.key, raw=record.value, detail=detail,
                 parsed=parsed, time=cloudevents.record_time(record), max_bytes=max_bytes, **extra)


def value(reason: Reason, stage: str, origin: dict[str, Any], raw: bytes | None = None, parsed: Any = UNPARSED,
          max_bytes: int = 512 * 1024, **extra: Any) -> dict[str, Any]:
    """The deadletter value, from the raw bytes (and the parsed document when there is one)."""
    record: dict[str, Any] = {"reason": reason, "stage": stage, "origin": origin}
    record.update(extra)
    if parsed is not UNPARSED:
        written = _written(parsed)
        if written is not None and (raw is None or len(raw) <= max_bytes):
            record["payload"] = parsed
            return record
        if raw is None:
            raw = written if written is not None else repr(parsed).encode()
    if raw is None:
        raw = b""
    truncated = len(raw) > max_bytes
    cut = raw[:max_bytes]
    try:
        record["payload"] = cut.decode("utf-8")
    except UnicodeDecodeError as error:
        if truncated and error.start >= len(cut) - 3:  # the cut split a multi-byte character
            record["payload"] = cut[: error.start].decode("utf-8", "replace")
        else:
            record["payload"] = base64.b64encode(cut).decode()
            record["encoding"] = "base64"
    if truncated:
        record["truncated"] = True
        record["size"] = len(raw)
    return record


def _written(parsed: Any) -> bytes | None:
    """``parsed`` as JSON, or None: orjson reads 1024 levels of nesting but writes only 254, and such a document
    is kept as its raw text. Encoded one level down, as it will be inside the deadletter value."""
    try:
        return orjson.dumps([parsed])[1:-1]
    except orjson.JSONEncodeError:
        return None
