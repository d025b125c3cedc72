"""Deadletter records: ``{"reason", "stage", "origin", "payload"}``, the same shape from every stage.

``payload`` is the original data: JSON when it parsed, else text, else base64 (with ``"encoding": "base64"``);
cut at ``max_bytes`` with ``"truncated": true`` — a cut document is kept as text, since it no longer parses.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from voicecall.runtime import cloudevents

_UNPARSED = object()


def value(reason: str, stage: str, origin: dict[str, Any], raw: bytes | None = None,
          parsed: Any = _UNPARSED, max_bytes: int = 512 * 1024, **extra: Any) -> dict[str, Any]:
    """Build a deadletter value from the raw bytes (and the parsed document when there is one)."""
    record: dict[str, Any] = {"reason": reason, "stage": stage, "origin": origin}
    record.update(extra)
    if parsed is not _UNPARSED:
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
    is kept as its raw text."""
    try:
        return orjson.dumps(parsed)
    except orjson.JSONEncodeError:
        return None


def encode(record: dict[str, Any], source: str, key: bytes | None = None
           ) -> tuple[bytes | None, bytes, cloudevents.Headers]:
    """``(key, value, headers)`` ready for ``producer.send``."""
    return key, orjson.dumps(record), cloudevents.headers(cloudevents.TYPE_DEADLETTER, source)
