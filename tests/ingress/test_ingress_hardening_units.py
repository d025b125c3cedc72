"""The pure parts of the ingress hardening: Content-Encoding decoding under a size limit, the record size bound
against aiokafka's own batches, big integers kept exactly, records too large for the broker, JSON error answers."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given, settings, strategies as st
from ingress_helpers import fee_push, ingress_settings

from voicecall.ingress import body, limits, parse
from voicecall.ingress.server import json_error
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

LIMIT = 4096
ORIGIN = {"path": "/notify", "client": "127.0.0.1"}


def test_gzip_deflate_and_raw_deflate_decode() -> None:
    plain = orjson.dumps(fee_push(2))
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert body.decode(gzip.compress(plain), "gzip", LIMIT) == (plain, True)
    assert body.decode(gzip.compress(plain), "x-gzip", LIMIT) == (plain, True)
    assert body.decode(zlib.compress(plain), "deflate", LIMIT) == (plain, True)
    assert body.decode(raw.compress(plain) + raw.flush(), "Deflate", LIMIT) == (plain, True)
    assert body.decode(plain, "identity", LIMIT) == (plain, True)
    assert body.decode(gzip.compress(gzip.compress(plain)), "gzip, gzip", LIMIT) == (plain, True)
    assert body.decode(gzip.compress(plain[:50]) + gzip.compress(plain[50:]), "gzip", LIMIT) == (plain, True)


def test_a_bomb_is_cut_just_past_the_limit() -> None:
    bomb = gzip.compress(b" " * (50 << 20))  # 50 MiB of spaces, ~50 KB compressed
    decoded, fits = body.decode(bomb, "gzip", LIMIT)
    assert not fits and len(decoded) == LIMIT + 1
    decoded, fits = body.decode(zlib.compress(b"x" * LIMIT), "deflate", LIMIT)
    assert fits and len(decoded) == LIMIT  # exactly the limit still fits


@pytest.mark.parametrize(("data", "coding", "reason", "status"), [
    (b"not gzip at all", "gzip", Reason.BAD_ENCODING, 400),
    (gzip.compress(b'{"eventType":"fee"}')[:-12], "gzip", Reason.BAD_ENCODING, 400),  # cut short
    (gzip.compress(b"{}") + b"trailing", "gzip", Reason.BAD_ENCODING, 400),
    (b"\xff" * 40, "deflate", Reason.BAD_ENCODING, 400),
    (b"", "gzip", Reason.BAD_ENCODING, 400),
    (b"{}", "br", Reason.UNSUPPORTED_ENCODING, 415),
    (b"{}", "gzip, zstd", Reason.UNSUPPORTED_ENCODING, 415),
])
def test_undecodable_bodies(data: bytes, coding: str, reason: Reason, status: int) -> None:
    with pytest.raises(body.Undecodable) as caught:
        body.decode(data, coding, LIMIT)
    assert (caught.value.reason, caught.value.status) == (reason, status)


@given(key=st.binary(max_size=300) | st.none(), value=st.binary(max_size=70_000) | st.none(),
       headers=st.lists(st.tuples(st.text(max_size=40), st.binary(max_size=200)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_record_size_bounds_the_batch_aiokafka_builds(key: bytes | None, value: bytes | None,
                                                      headers: list[tuple[str, bytes]]) -> None:
    builder = BatchBuilder(1 << 30, 0)
    assert builder.append(timestamp=None, key=key, value=value, headers=headers) is not None
    built = len(builder._build())
    bound = limits.record_size(Record("t", key, value, headers)) + limits.BATCH_HEADER
    assert built <= bound <= built + 40 + 10 * len(headers)  # an upper bound, and a close one
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) <= bound


def parser(**max_message: int) -> parse.Parser:
    settings = ingress_settings("127.0.0.1:1", Path("/nonexistent"), topic_prefix="p.")
    found = parse.Parser(settings)
    found.limits.update({f"p.{name.replace('_', '.')}": size for name, size in max_message.items()})
    return found


def run(p: parse.Parser, doc: dict[str, Any] | bytes) -> parse.Outcome:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return p.parse(raw, received="2026-01-01T00:00:00.000Z", push_id="x", origin=dict(ORIGIN))


def test_a_record_the_broker_would_refuse_is_413_with_its_push_in_deadletter() -> None:
    p = parser(status_raw=20_000, fee_raw=30_000)
    fits = run(p, {"eventType": "callout", "statusInfo": {"sessionId": "s", "x": "a" * 10_000}})
    assert fits.status == 200 and fits.records[0].topic == "p.status.raw"
    big = run(p, {"eventType": "callout", "statusInfo": {"sessionId": "s", "x": "a" * 25_000}})
    assert big.status == 413 and big.reason is Reason.TOO_LARGE and "takes at most" in big.detail
    (dead,) = big.records
    assert dead.topic == "p.deadletter" and orjson.loads(dead.value or b"")["payload"]["statusInfo"]["sessionId"]
    fee = fee_push(3)
    fee["feeLst"][1]["x"] = "a" * 30_000  # one CDR of three is too large: the push is refused whole
    assert run(p, fee).status == 413
    fee["feeLst"][1]["x"] = "a" * 25_000
    assert run(p, fee).status == 200


def test_a_long_session_id_counts_twice_key_and_value() -> None:
    p = parser(status_raw=30_000)
    assert run(p, {"eventType": "answer", "statusInfo": {"sessionId": "s" * 14_000}}).status == 200
    refused = run(p, {"eventType": "answer", "statusInfo": {"sessionId": "s" * 16_000}})
    assert refused.status == 413 and len(refused.records[0].key or b"") == 1024


def test_the_deadletter_record_is_cut_to_what_the_deadletter_topic_takes() -> None:
    p = parser(deadletter=40_000)
    assert p.limits.deadletter_payload == 40_000 - limits.BATCH_HEADER - 16 * 1024
    out = run(p, b"\x01" * 200_000)
    assert out.status == 400 and out.reason is Reason.NOT_JSON
    assert limits.record_size(out.records[0]) <= p.limits.largest["p.deadletter"]


@pytest.mark.parametrize("number", ["18446744073709551617", "-9223372036854775809", "123456789012345678901234567890"])
def test_integers_beyond_64_bits_are_kept_digit_for_digit(number: str) -> None:
    p = parser()
    record = orjson.loads(orjson.dumps(fee_push(1)))["feeLst"][0]
    raw = orjson.dumps({"eventType": "fee", "feeLst": [record]}).replace(b'"recordFlag":0', b'"endToEndID":'
                                                                         + number.encode() + b',"recordFlag":0')
    out = run(p, raw)
    assert out.status == 200
    assert b'"endToEndID":' + number.encode() + b"," in (out.records[0].value or b"")
    again = run(p, raw)
    assert dict(again.records[0].headers)["ce_id"] == dict(out.records[0].headers)["ce_id"]
    status = run(p, b'{"eventType":"answer","statusInfo":{"sessionId":"s","n":' + number.encode() + b"}}")
    assert status.status == 200 and status.records[0].value == b'{"sessionId":"s","n":' + number.encode() + b"}"


def test_numbers_orjson_keeps_are_not_read_twice_and_e_plus_in_text_changes_nothing() -> None:
    p = parser()
    plain = run(p, b'{"eventType":"answer","statusInfo":{"sessionId":"s","n":18446744073709551615,"f":1.5}}')
    assert plain.records[0].value == b'{"sessionId":"s","n":18446744073709551615,"f":1.5}'
    text = run(p, b'{"eventType":"answer","statusInfo":{"sessionId":"s","u":"see+more","x":1E20}}')
    assert text.status == 200 and text.records[0].value == b'{"sessionId":"s","u":"see+more","x":1e+20}'


def test_a_big_integer_in_a_rejected_push_is_kept_as_text_in_deadletter() -> None:
    out = run(parser(), b'{"eventType":"weird","n":18446744073709551617}')
    assert out.status == 200 and out.reason is Reason.UNKNOWN_EVENT_TYPE
    assert orjson.loads(out.records[0].value or b"")["payload"] == '{"eventType":"weird","n":18446744073709551617}'


def test_framework_errors_become_json_with_their_status_and_headers() -> None:
    allowed = json_error(web.HTTPMethodNotAllowed("GET", ["POST"]))
    assert allowed.status == 405 and allowed.headers["Allow"] == "POST"
    assert orjson.loads(allowed.body) == {"resultcode": "1", "resultdesc": "405: Method Not Allowed"}  # type: ignore[arg-type]
    crashed = web.Response(status=500, text="500 Internal Server Error\n\nTraceback (most recent call last): …")
    crashed.force_close()
    answer = json_error(crashed)
    assert orjson.loads(answer.body) == {"resultcode": "1", "resultdesc": "Internal Server Error"}  # type: ignore[arg-type]
    assert answer.keep_alive is False and answer.content_type == "application/json"
