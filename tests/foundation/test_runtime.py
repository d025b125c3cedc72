"""Pure runtime pieces: deadletter values, CloudEvents headers, Huawei times and the X-AKSK signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, strategies as st

from voicecall import huawei
from voicecall.runtime import cloudevents, deadletter

ORIGIN = {"path": "/notify", "client": "127.0.0.1"}


def test_deadletter_keeps_parsed_json() -> None:
    record = deadletter.value("bad-shape", "ingress", ORIGIN, raw=b'{"a": 1}', parsed={"a": 1})
    assert record == {"reason": "bad-shape", "stage": "ingress", "origin": ORIGIN, "payload": {"a": 1}}


def test_deadletter_keeps_text_and_base64() -> None:
    assert deadletter.value("not-json", "ingress", ORIGIN, raw="电话 call".encode())["payload"] == "电话 call"
    binary = deadletter.value("not-utf8", "ingress", ORIGIN, raw=b"\xff\xfe\x00")
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == b"\xff\xfe\x00"


def test_deadletter_truncates_big_payloads() -> None:
    raw = b"x" * 5000
    record = deadletter.value("too-big", "ingress", ORIGIN, raw=raw, parsed=None, max_bytes=1024)
    assert record["truncated"] is True and record["size"] == 5000 and record["payload"] == "x" * 1024


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=200))
def test_deadletter_cut_text_never_becomes_base64(text: str, limit: int) -> None:
    record = deadletter.value("r", "s", ORIGIN, raw=text.encode(), max_bytes=limit)
    assert "encoding" not in record
    assert text.startswith(record["payload"].rstrip("\ufffd"))
    orjson.dumps(record)


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
