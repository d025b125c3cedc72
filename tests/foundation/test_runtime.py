"""Pure runtime pieces: deadletter values, CloudEvents headers, Huawei times and the X-AKSK signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, strategies as st

from voicecall import huawei
from voicecall.runtime import cloudevents, deadletter
from voicecall.runtime.deadletter import Reason

ORIGIN = {"path": "/notify", "client": "127.0.0.1"}


def test_deadletter_keeps_parsed_json() -> None:
    record = deadletter.value(Reason.INVALID_SHAPE, "ingress", ORIGIN, raw=b'{"a": 1}', parsed={"a": 1})
    assert record == {"reason": "invalid-shape", "stage": "ingress", "origin": ORIGIN, "payload": {"a": 1}}


def test_deadletter_keeps_text_and_base64() -> None:
    assert deadletter.value(Reason.NOT_JSON, "ingress", ORIGIN, raw="电话 call".encode())["payload"] == "电话 call"
    binary = deadletter.value(Reason.INVALID_UTF8, "ingress", ORIGIN, raw=b"\xff\xfe\x00")
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == b"\xff\xfe\x00"


def test_deadletter_truncates_big_payloads() -> None:
    raw = b"x" * 5000
    record = deadletter.value(Reason.TOO_LARGE, "ingress", ORIGIN, raw=raw, parsed=None, max_bytes=1024)
    assert record["truncated"] is True and record["size"] == 5000 and record["payload"] == "x" * 1024


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=200))
def test_deadletter_cut_text_never_becomes_base64(text: str, limit: int) -> None:
    record = deadletter.value(Reason.NOT_JSON, "s", ORIGIN, raw=text.encode(), max_bytes=limit)
    assert "encoding" not in record
    assert text.startswith(record["payload"].rstrip("\ufffd"))
    orjson.dumps(record)


def consumed(offset: int = 7, value: bytes | None = b'{"sessionId": "s"}',
             headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord:
    return ConsumerRecord("p.fee.unique", 2, offset, 1_700_000_000_123, 0, b"s", value, None, 1, 0, headers or [])


def test_deadletter_of_a_consumed_record_is_deterministic() -> None:
    def build(record: ConsumerRecord, reason: Reason = Reason.BAD_TIME) -> Any:
        return deadletter.for_record(record, reason, "billing", "p.deadletter", detail="callEndTime unreadable",
                                     parsed=orjson.loads(record.value), max_bytes=1024)

    first, again = build(consumed()), build(consumed())
    assert (first.topic, first.key, first.value, first.headers) == (again.topic, again.key, again.value, again.headers)
    headers = dict(first.headers)
    assert headers["ce_source"] == b"/voicecall/billing" and headers["ce_type"] == b"voicecall.deadletter"
    assert headers["ce_time"] == b"2023-11-14T22:13:20.123Z"  # the record's own time: a retry writes the same
    assert orjson.loads(first.value) == {
        "reason": "bad-time", "stage": "billing", "detail": "callEndTime unreadable", "payload": {"sessionId": "s"},
        "origin": {"topic": "p.fee.unique", "partition": 2, "offset": 7}}
    ids = {dict(r.headers)["ce_id"] for r in (first, build(consumed(offset=8)), build(consumed(), Reason.NOT_JSON))}
    assert len(ids) == 3  # another offset or another reason is another event
    with_time = consumed(headers=[("ce_time", b"2019-01-24T03:05:16.402Z")])
    assert dict(build(with_time).headers)["ce_time"] == b"2019-01-24T03:05:16.402Z"


def test_deadletter_of_a_push_has_the_same_id_when_the_push_is_sent_again() -> None:
    def build(body: bytes, client: str) -> bytes:
        record = deadletter.build(Reason.NOT_JSON, "ingress", {"path": "/notify", "client": client},
                                  topic="p.deadletter", key=None, raw=body, detail="body is not JSON",
                                  time="2019-01-24T03:05:16.402Z")
        return dict(record.headers)["ce_id"]

    assert build(b"{oops", "10.0.0.1") == build(b"{oops", "10.0.0.2")  # the platform re-sends from any host
    assert build(b"{oops", "10.0.0.1") != build(b"{oops!", "10.0.0.1")


def test_deadletter_keeps_a_document_nested_as_deep_as_orjson_writes() -> None:
    deep: Any = 0
    for _ in range(254):  # writable alone, one level too deep inside the deadletter value
        deep = [deep]
    raw = orjson.dumps(deep)
    record = deadletter.for_record(consumed(value=raw), Reason.NOT_AN_OBJECT, "dedup", "p.deadletter",
                                   detail="a fee record is a JSON object", parsed=deep)
    assert orjson.loads(record.value or b"")["payload"] == raw.decode()


def test_cloudevents_headers() -> None:
    headers = dict(cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/ingress", ce_id="abc",
                                       extra=[("voicecall_push_id", b"p1")]))
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"abc"
    assert headers["ce_type"] == b"com.huaweicloud.voicecall.fee"
    assert headers["content-type"] == b"application/json"
    assert headers["voicecall_push_id"] == b"p1"
    assert headers["ce_time"].endswith(b"Z")


@pytest.mark.parametrize(("text", "expected"), [
    ("2019-01-24 03:04:24", datetime(2019, 1, 24, 3, 4, 24, tzinfo=UTC)),
    ("2016-12-26  01:19:46", datetime(2016, 12, 26, 1, 19, 46, tzinfo=UTC)),  # F2's doubled space
    ("", None), (None, None),
])
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert huawei.parse_time(text) == expected


@pytest.mark.parametrize("text", ["2019-13-01 00:00:00", "yesterday", "2019-01-24T03:04:24Z", 20190124])
def test_parse_time_rejects(text: object) -> None:
    with pytest.raises(huawei.BadTime):
        huawei.parse_time(text)


def test_x_aksk_matches_the_official_python_sample() -> None:
    # The official helper: hmac.new(appSecret, nonce + now, sha256) → base64 (reference §5.2).
    nonce, created, secret = "66C92B11FF8A425FB8D4CCFE0ED9ED1F", "2018-02-12T15:30:20Z", "s3cr3t"
    expected = base64.b64encode(hmac.new(secret.encode(), (nonce + created).encode(), hashlib.sha256).digest())
    header = huawei.x_aksk("app", secret, nonce=nonce, created=created)
    fields = huawei.parse_x_aksk(header)
    assert fields["PasswordDigest"] == expected.decode()
    assert fields["Username"] == "app" and fields["Nonce"] == nonce and fields["Created"] == created


def test_parse_x_aksk_tolerates_spaces_after_commas() -> None:
    fields = huawei.parse_x_aksk('UsernameToken Username="a", PasswordDigest="b=", Nonce="c", Created="d"')
    assert fields == {"Username": "a", "PasswordDigest": "b=", "Nonce": "c", "Created": "d", "UsernameToken": ""}
