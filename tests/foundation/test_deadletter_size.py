"""A deadletter record always fits the deadletter topic: its payload takes at most ``max_bytes`` as written (JSON
escapes included) and everything else at most ``ENVELOPE``, whatever the rejected input was."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given, settings, strategies as st

from voicecall.runtime import deadletter
from voicecall.runtime.deadletter import ENVELOPE, Reason

ORIGIN = {"path": "/notify", "client": "127.0.0.1"}


def size(record: Any) -> int:
    return len(record.key or b"") + len(record.value) + sum(len(k) + len(v) for k, v in record.headers)


def payload_bytes(record: Any) -> int:
    return len(orjson.dumps(orjson.loads(record.value)["payload"])) - 2


@given(st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode), st.integers(min_value=8, max_value=2048))
@settings(max_examples=300)
def test_any_body_fits_its_budget_as_written(raw: bytes, limit: int) -> None:
    record = deadletter.build(Reason.NOT_JSON, "ingress", ORIGIN, topic="p.deadletter", key=None, raw=raw,
                              detail="body is not JSON", max_bytes=limit)
    value = orjson.loads(record.value)
    assert payload_bytes(record) <= limit
    assert size(record) <= limit + ENVELOPE
    kept = base64.b64decode(value["payload"]) if value.get("encoding") == "base64" else value["payload"].encode()
    if value.get("truncated"):
        assert value["size"] == len(raw) and len(kept) < len(raw)
    else:
        assert kept == raw


def test_control_characters_are_cut_by_their_escaped_size() -> None:
    raw = b"\x01" * 200_000  # 1.2 MB once every byte is written as \u0001
    record = deadletter.build(Reason.NOT_JSON, "ingress", ORIGIN, topic="p.deadletter", key=None, raw=raw,
                              detail="body is not JSON", max_bytes=512 * 1024)
    value = orjson.loads(record.value)
    assert value["truncated"] is True and value["size"] == 200_000 and "encoding" not in value
    assert value["payload"] == "\x01" * len(value["payload"])
    assert 512 * 1024 - 6 < payload_bytes(record) <= 512 * 1024  # as much as fits, not a byte more
    assert size(record) <= 512 * 1024 + ENVELOPE


def test_quotes_and_a_parsed_document_that_escapes_past_the_budget() -> None:
    quotes = b'"' * (1_100_000)
    record = deadletter.build(Reason.NOT_JSON, "ingress", ORIGIN, topic="p.deadletter", key=None, raw=quotes,
                              detail="body is not JSON", max_bytes=512 * 1024)
    assert payload_bytes(record) <= 512 * 1024 and orjson.loads(record.value)["truncated"] is True
    doc = {"eventType": "callout", "x": "\x02" * 100_000}  # 100 KB parsed, 600 KB written
    raw = orjson.dumps(doc)
    record = deadletter.build(Reason.INVALID_SHAPE, "ingress", ORIGIN, topic="p.deadletter", key=None, raw=raw,
                              detail="x", parsed=doc, max_bytes=512 * 1024)
    value = orjson.loads(record.value)
    assert isinstance(value["payload"], str) and value["truncated"] is True and payload_bytes(record) <= 512 * 1024


def test_long_key_detail_and_origin_fields_are_cut() -> None:
    long = "s" * 600_000
    record = deadletter.build(Reason.INVALID_SHAPE, "ingress", {"path": "/notify", "client": "\x03" * 20_000},
                              topic="p.deadletter", key=long.encode(), raw=b"{}", detail=long, parsed={},
                              max_bytes=1024, sessionId=long, fingerprints={"first": long})
    value = orjson.loads(record.value)
    assert len(record.key or b"") == deadletter.MAX_KEY
    for field in (value["detail"], value["sessionId"], value["origin"]["client"], value["fingerprints"]):
        assert len(orjson.dumps(field)) - 2 <= deadletter.MAX_FIELD
    assert size(record) <= 1024 + ENVELOPE


def test_short_fields_are_kept_as_they_are() -> None:
    record = deadletter.build(Reason.CONFLICTING_DUPLICATE, "dedup", {"topic": "t", "partition": 1, "offset": 9},
                              topic="p.deadletter", key=b"s", raw=b'{"sessionId":"s"}', detail="seen before",
                              parsed={"sessionId": "s"}, fingerprints={"first": "a", "later": "b"})
    value = orjson.loads(record.value)
    assert value["fingerprints"] == {"first": "a", "later": "b"} and value["origin"]["offset"] == 9
    assert value["payload"] == {"sessionId": "s"} and "truncated" not in value
