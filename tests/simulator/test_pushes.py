"""Fee merging (same callEndTime, ≤ 50 per push), the CDR answer check, push signatures, WAV bytes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import struct
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from simulator_support import START

from voicecall import huawei
from voicecall.simulator import pushes, signing, wav
from voicecall.simulator.calls import CallOptions, generate


def test_fee_records_merged_by_end_second_at_most_50() -> None:
    opts = CallOptions(seed=3, start=START, rate=400.0)  # many calls end in the same second
    calls = list(generate(opts, 4000))
    fee_pushes = [item for item in pushes.timeline(calls) if isinstance(item, pushes.FeePush)]
    sent = Counter(session for push in fee_pushes for session in push.session_ids)
    assert sent == Counter(call.session_id for call in calls)  # every call's CDR exactly once
    by_second: Counter[str] = Counter()
    for push in fee_pushes:
        body = orjson.loads(push.body)
        assert body["eventType"] == "fee"
        assert 1 <= len(body["feeLst"]) <= 50
        ends = {record["callEndTime"] for record in body["feeLst"]}
        assert len(ends) == 1  # one push never mixes end seconds
        end = ends.pop()
        by_second[end] += 1
        assert push.at == huawei.parse_time(end).timestamp() + 1  # type: ignore[union-attr]
    assert max(len(orjson.loads(p.body)["feeLst"]) for p in fee_pushes) == 50
    # Everything ending in one second is in consecutive pushes of that second only (full ones first).
    expected = Counter(call.fee["callEndTime"] for call in calls)
    for end, pushes_of_second in by_second.items():
        assert pushes_of_second == -(-expected[end] // 50)


def test_timeline_is_in_time_order_with_statuses_before_the_fee_push() -> None:
    items = list(pushes.timeline(generate(CallOptions(seed=5, start=START, rate=30.0), 500)))
    times = [item.at for item in items]
    assert times == sorted(times)
    last_status: dict[str, float] = {}
    for item in items:
        if isinstance(item, pushes.StatusPush):
            last_status[item.session_id] = item.at
        elif isinstance(item, pushes.FeePush):
            for session in item.session_ids:
                assert last_status[session] < item.at  # disconnect pushed before the CDR


@pytest.mark.parametrize(("status", "body", "accepted"), [
    (200, b'{"resultcode":"0","resultdesc":"Success"}', True),
    (200, b'{"resultcode":0}', True),
    (200, b"", True),
    (200, b"OK", True),
    (200, b'{"resultdesc":"fine"}', True),
    (200, b'{"resultcode":"1","resultdesc":"bad"}', False),
    (200, b'{"resultcode":"1010001"}', False),
    (500, b'{"resultcode":"0"}', False),
    (503, b"", False),
    (201, b"", False),
])
def test_fee_answer_check(status: int, body: bytes, accepted: bool) -> None:
    assert pushes.fee_accepted(status, body) is accepted


def test_push_headers_signature_forms() -> None:
    assert signing.push_headers("http://x/fee") == {"Content-Type": "application/json;charset=UTF-8"}
    url = "https://receiver.example/notify/fee"
    headers = signing.push_headers(url, "key", "secret", "newline")
    assert headers["Authorization"] == 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"'
    fields = huawei.parse_x_aksk(headers["X-AKSK"])
    assert fields["Username"] == "key"
    message = f"{url}\n{fields['Nonce']}\n{fields['Created']}".encode()
    expected = base64.b64encode(hmac.new(b"secret", message, hashlib.sha256).digest()).decode()
    assert fields["PasswordDigest"] == expected
    concat = huawei.push_digest("secret", url, "N", "C", "concat")
    assert concat == base64.b64encode(hmac.new(b"secret", f"{url}NC".encode(), hashlib.sha256).digest()).decode()
    request = huawei.parse_x_aksk(signing.push_headers(url, "key", "secret", "request")["X-AKSK"])
    assert request["PasswordDigest"] == huawei.password_digest("secret", request["Nonce"], request["Created"])
    with pytest.raises(ValueError):
        huawei.push_digest("secret", url, "N", "C", "request")  # not a push form: the ingress never accepts it


def test_wav_is_alaw_8k_mono_and_deterministic() -> None:
    data = wav.content("a.wav", 100_000)
    assert len(data) == 100_000
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[12:16] == b"fmt "
    riff_size, = struct.unpack("<I", data[4:8])
    assert riff_size == 100_000 - 8
    fmt_size, tag, channels, rate, byte_rate, align, bits = struct.unpack("<IHHIIHH", data[16:36])
    assert (tag, channels, rate, byte_rate, align, bits) == (6, 1, 8000, 8000, 1, 8)
    data_at = 20 + fmt_size + 12
    assert data[data_at:data_at + 4] == b"data"
    assert struct.unpack("<I", data[data_at + 4:data_at + 8])[0] == 100_000 - data_at - 8
    assert wav.content("a.wav", 100_000) == data
    assert wav.content("b.wav", 100_000) != data
    assert wav.sha256("a.wav", 100_000) == hashlib.sha256(data).hexdigest()
    for start, stop in ((0, 10), (50, 70000), (65_594, 65_600), (99_990, 100_000)):
        assert b"".join(wav.chunks("a.wav", 100_000, start, stop)) == data[start:stop]


def test_call_options_are_plain_data() -> None:
    # Platform builds its options with dataclasses.replace; an unknown option must fail loudly.
    with pytest.raises(TypeError):
        dataclasses.replace(CallOptions(), no_such_option=1)  # type: ignore[call-arg]


def test_push_created_zone_is_switchable() -> None:
    # UNCONFIRMED (reference §1.3): UTC as the example's "Z" says, or Beijing time as the text says
    now = datetime(2026, 3, 1, 20, 30, 5, tzinfo=UTC)
    assert signing.push_created("utc", now) == "2026-03-01T20:30:05Z"
    assert signing.push_created("beijing", now) == "2026-03-02T04:30:05Z"
    with pytest.raises(ValueError):
        signing.push_created("mars", now)
    before = datetime.now(UTC)
    headers = signing.push_headers("http://x/fee", "key", "secret", "newline", created_zone="beijing")
    created = datetime.strptime(huawei.parse_x_aksk(headers["X-AKSK"])["Created"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((created.replace(tzinfo=UTC) - before).total_seconds() - 8 * 3600) < 5
