"""CloudEvents Kafka protocol binding, binary content mode: attributes as ``ce_*`` headers, data as the value."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from voicecall.runtime import times

Headers = list[tuple[str, bytes]]

SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"

TYPE_STATUS = "com.huaweicloud.voicecall.status."  # + eventType
TYPE_FEE = "com.huaweicloud.voicecall.fee"
TYPE_BILLING = "voicecall.billing.computed"
TYPE_RECORDING_STORED = "voicecall.recording.stored"
TYPE_RECORDING_FAILED = "voicecall.recording.failed"
TYPE_DEADLETTER = "voicecall.deadletter"
TYPE_CALL = "voicecall.call.updated"

# The project's own headers beside the CloudEvents ones.
RECEIVED = "voicecall_received"  # the ingress's receive time (RFC 3339, ms, Z)
PUSH_ID = "voicecall_push_id"  # one id per HTTP push, on each of its records
REPLAY_ID = "voicecall-replay-id"  # written by replay copy on every record it re-emits
SIGNATURE = "voicecall-signature"  # the ingress's X-AKSK verdict on the push (valid, absent, invalid:<check>, …)


def headers(ce_type: str, source: str, ce_id: str | None = None, time: str | None = None,
            extra: Headers | None = None) -> Headers:
    """The required CloudEvents headers plus ``content-type``; ``extra`` headers are appended as given."""
    result: Headers = [
        ("ce_specversion", SPECVERSION),
        ("ce_id", (ce_id or uuid.uuid4().hex).encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", (time or times.now_iso()).encode()),
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


def event_id(*parts: object) -> str:
    """A deterministic ``ce_id`` from the parts (128-bit BLAKE2b, hex): the same event produced again (a retried
    transaction, a replay, a re-sent push) gets the same id."""
    return hashlib.blake2b("\n".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def record_time(record: Any) -> str:
    """The time of a consumed record (an aiokafka ``ConsumerRecord``): its ``ce_time`` when that is RFC 3339, else
    its Kafka timestamp (a record from another producer may carry anything in that header)."""
    value = header(record.headers, "ce_time")
    return value if value is not None and times.is_rfc3339(value) else times.iso_ms(record.timestamp)
