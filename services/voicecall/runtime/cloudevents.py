"""CloudEvents Kafka protocol binding, binary content mode: attributes as ``ce_*`` headers, data as the value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

Headers = list[tuple[str, bytes]]

SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"

TYPE_STATUS = "com.huaweicloud.voicecall.status."  # + eventType
TYPE_FEE = "com.huaweicloud.voicecall.fee"
TYPE_BILLING = "voicecall.billing.computed"
TYPE_RECORDING_STORED = "voicecall.recording.stored"
TYPE_RECORDING_FAILED = "voicecall.recording.failed"
TYPE_DEADLETTER = "voicecall.deadletter"


def now_iso() -> str:
    """RFC 3339 UTC with milliseconds and ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def headers(ce_type: str, source: str, ce_id: str | None = None, time: str | None = None,
            extra: Headers | None = None) -> Headers:
    """The required CloudEvents headers plus ``content-type``; ``extra`` headers are appended as given."""
    result: Headers = [
        ("ce_specversion", SPECVERSION),
        ("ce_id", (ce_id or uuid.uuid4().hex).encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", (time or now_iso()).encode()),
        ("content-type", CONTENT_TYPE),
    ]
    if extra:
        result.extend(extra)
    return result


def header(headers_: Headers | tuple[tuple[str, bytes], ...] | None, name: str) -> str | None:
    """The first header called ``name``, decoded, or None."""
    for key, value in headers_ or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None
