"""Every answer keeps the contract (real broker): compressed bodies, aiohttp's own errors, Expect: 100-continue,
deep nesting on /notify, integers beyond 64 bits, and RFC 3339 ``ce_time`` from odd push times."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import yaml
from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web
from aiohttp.test_utils import make_mocked_request
from aiokafka.structs import ConsumerRecord
from ingress_helpers import F2, Ingress, fee_push, status_push

from kafka_helpers import read_all
from voicecall.billing.core import BillingCore
from voicecall.billing.tariff import Tariff
from voicecall.dedup.core import DedupCore
from voicecall.ingress import server
from voicecall.runtime import cloudevents, deadletter, times
from voicecall.runtime.deadletter import Reason


async def read_answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One answer: its status line, headers (lower-case names) and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    return head[0], headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def raw_request(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers (lower-case) and body of the first answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            line, headers, body = await read_answer(reader)
            return int(line.split()[1]), headers, body
    finally:
        writer.close()


def contract_json(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
    answer = orjson.loads(body)
    assert set(answer) == {"resultcode", "resultdesc"} and answer["resultcode"] == ("0" if status == 200 else "1")
    assert isinstance(answer["resultdesc"], str) and answer["resultdesc"]
    return dict(answer)


def post_bytes(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_compressed_bodies_are_decoded_with_the_limit_on_the_decoded_bytes(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    url = f"{ingress.url}/notify/fee"
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    good = {"gzip": gzip.compress(F2), "deflate": zlib.compress(F2),
            "deflate ": raw_deflate.compress(F2) + raw_deflate.flush()}
    for coding, data in good.items():
        status, answer = await post(url, data, headers={"Content-Encoding": coding.strip()})
        assert (status, answer["resultcode"]) == (200, "0"), coding
    bad = {
        "invalid gzip": (b"\x1f\x8b garbage", "gzip", 400, "bad-encoding"),
        "gzip cut short": (gzip.compress(F2)[:-20], "gzip", 400, "bad-encoding"),
        "gzip bomb": (gzip.compress(b" " * (20 << 20)), "gzip", 413, "too-large"),
        "brotli": (F2, "br", 415, "unsupported-encoding"),
    }
    for name, (data, coding, code, _reason) in bad.items():
        status, headers, body = await raw_request(ingress.url, post_bytes(
            "/notify/fee", data, f"Content-Encoding: {coding}"))
        assert status == code, (name, status, body)
        contract_json(status, headers, body)
        if code == 415:
            assert headers["accept-encoding"] == "gzip, deflate"
    fees = await read_all(ingress.settings, "fee.raw", expect=2 * len(good), idle=1.0)
    assert len(fees) == 2 * len(good) and all(r.value == fees[0].value for r in fees)
    dead = [orjson.loads(r.value) for r in await read_all(ingress.settings, "deadletter", expect=len(bad), idle=1.0)]
    assert sorted(d["reason"] for d in dead) == sorted(r for *_, r in bad.values())
    for value in dead:
        assert value["origin"]["content_encoding"] in ("gzip", "br"), value
        if value["reason"] == "bad-encoding":
            assert value["encoding"] == "base64"  # the body as received: compressed bytes


# Requests aiohttp itself answers: each must still get the contract's JSON body.
FRAMEWORK_ERRORS: dict[str, tuple[bytes, int]] = {
    "unknown path": (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
    "GET on a notify path": (b"GET /notify/status HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "PUT on /notify": (b"PUT /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "TLS on the plain port": (bytes.fromhex("160301002a0100002603035a") + b"\0" * 40 + b"\r\n\r\n", 400),
    "space in a header name": (b"POST /notify HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    "request line over 8 KiB": (b"POST /notify?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "header over the field limit": (b"POST /notify HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 400),
    "Content-Length not a number": (b"POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    "Content-Length and chunked": (b"POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n{}", 400),
    "broken chunked body": (b"POST /notify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n", 400),
    "unknown Expect": (b"POST /notify HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}", 417),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", sorted(FRAMEWORK_ERRORS))
async def test_aiohttps_own_answers_keep_the_contract(ingress: Ingress, name: str) -> None:
    data, code = FRAMEWORK_ERRORS[name]
    status, headers, body = await raw_request(ingress.url, data)
    assert status == code, (name, status, body)
    contract_json(status, headers, body)
    if code == 405:
        assert headers["allow"] == "POST"


async def test_expect_100_continue_over_the_limit_is_413_at_once(ingress: Ingress) -> None:
    limit = ingress.settings.ingress_max_body
    started = time.monotonic()
    status, headers, body = await raw_request(ingress.url, (
        f"POST /notify/fee HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n"
        "Expect: 100-continue\r\n\r\n").encode(), timeout=5)
    assert status == 413 and time.monotonic() - started < 2.0  # the first answer: no 100 Continue, no wait
    assert contract_json(status, headers, body)["resultdesc"].startswith(f"body over {limit} bytes")
    assert headers.get("connection") == "close"
    (dead,) = await read_all(ingress.settings, "deadletter", expect=1, idle=0.5)
    value = orjson.loads(dead.value)
    assert (value["reason"], value["payload"], value["origin"]["content_length"]) == ("too-large", "", limit + 1)
    # Within the limit the client gets its 100 Continue and then the answer.
    parts = urlsplit(ingress.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        push = orjson.dumps(status_push("expecting"))
        writer.write(f"POST /notify/status HTTP/1.1\r\nHost: x\r\nContent-Length: {len(push)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(push)
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


def nested(depth: int) -> bytes:
    """A /notify push of an unknown eventType whose document is ``depth`` levels deep."""
    return b'{"eventType":"weird","x":' + b"[" * (depth - 1) + b"0" + b"]" * (depth - 1) + b"}"


async def test_depth_254_on_notify_with_an_unknown_event_type_is_kept_as_its_text(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    for depth in (253, 254, 255, 1000):
        assert await post(f"{ingress.url}/notify", nested(depth)) == (200, {"resultcode": "0",
                                                                             "resultdesc": "Success"}), depth
    dead_records = await read_all(ingress.settings, "deadletter", expect=4, idle=0)
    dead = {len(r.value): orjson.loads(r.value) for r in dead_records}
    payloads = [value["payload"] for _, value in sorted(dead.items())]
    assert isinstance(payloads[0], dict)  # 253 levels: written as JSON
    assert payloads[1:] == [nested(254).decode(), nested(255).decode(), nested(1000).decode()]  # as received


async def test_integers_beyond_64_bits_reach_fee_raw_and_status_raw_exactly(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    fee = orjson.dumps(fee_push(1, tag="bigint-")).replace(b'"recordFlag":0', b'"endToEndID":18446744073709551617,'
                                                                                 b'"recordFlag":0')
    assert (await post(f"{ingress.url}/notify/fee", fee))[0] == 200
    status = b'{"eventType":"answer","statusInfo":{"sessionId":"bigint","n":-9223372036854775809}}'
    assert (await post(f"{ingress.url}/notify/status", status))[0] == 200
    (record,) = await read_all(ingress.settings, "fee.raw", expect=1, idle=0)
    assert b'"endToEndID":18446744073709551617,' in record.value
    (record,) = await read_all(ingress.settings, "status.raw", expect=1, idle=0)
    assert record.value == b'{"sessionId":"bigint","n":-9223372036854775809}'


ODD_TIMES = ["0001-01-01 00:00:00", "0999-12-31  23:59:59", "9999-12-31 23:59:59", "2019-02-30 00:00:00",
             "2019-01-24T03:04:24Z", "", "yesterday"]


def rfc3339(value: str | None) -> bool:
    return value is not None and times.is_rfc3339(value)


async def test_every_ce_time_is_rfc3339_at_the_ingress_and_every_stage(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    for i, moment in enumerate(ODD_TIMES):
        push = status_push(f"time-{i}")
        push["statusInfo"]["timestamp"] = moment
        assert (await post(f"{ingress.url}/notify/status", push))[0] == 200
        fee = fee_push(1, tag=f"time-{i}-", callEndTime=moment, callOutAnswerTime=moment, fwdAnswerTime=moment)
        assert (await post(f"{ingress.url}/notify/fee", fee))[0] in (200, 400)
    assert (await post(f"{ingress.url}/notify", {"eventType": "weird"}))[0] == 200
    produced = []
    for suffix, n in (("status.raw", len(ODD_TIMES)), ("fee.raw", 1), ("deadletter", 1)):
        produced += await read_all(ingress.settings, suffix, expect=n, idle=0.5)
    times_ = [cloudevents.header(r.headers, "ce_time") for r in produced]
    assert all(rfc3339(t) for t in times_), times_
    year_one = [r for r in produced if r.key == b"time-0"]
    assert cloudevents.header(year_one[0].headers, "ce_time") == "0001-01-01T00:00:00Z"

    # The stages after the ingress, on what it wrote (and on a record of another producer with a bad ce_time).
    fees = [r for r in produced if r.topic.endswith("fee.raw")]
    foreign = ConsumerRecord(fees[0].topic, 0, 99, 1_700_000_000_000, 0, b"foreign", b'{"sessionId":"foreign",'
                             b'"callEndTime":"24/01/2019"}', None, 7, 40, [("ce_time", b"1-01-01T00:00:00Z")])
    dedup = DedupCore(0, "p.fee.unique", "p.deadletter", "p.dedup.changelog", 7 * 86400)
    billing = BillingCore(billing_topic="p.billing", deadletter_topic="p.deadletter", tariff=Tariff("CNY", {}))
    outputs = []
    for record in [*fees, foreign]:
        outputs += dedup.process(record) + billing.process(record)
    written = [o for o in outputs if o.value is not None and not o.topic.endswith("changelog")]
    assert {o.topic for o in written} >= {"p.fee.unique", "p.billing", "p.deadletter"}
    assert all(rfc3339(cloudevents.header(o.headers, "ce_time")) for o in written), [
        (o.topic, cloudevents.header(o.headers, "ce_time")) for o in written]
    recording = deadletter.for_record(foreign, Reason.BAD_TIME, "recordings", "p.deadletter", detail="x")
    assert cloudevents.header(recording.headers, "ce_time") == "2023-11-14T22:13:20.000Z"


def test_openapi_documents_every_answer_of_the_notify_paths() -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml").read_text())
    answers = {"200", "400", "401", "403", "408", "413", "415", "417", "500", "503"}
    for path in ("/notify/status", "/notify/fee", "/notify"):
        responses = doc["paths"][path]["post"]["responses"]
        assert set(responses) == answers, path
        for code, ref in responses.items():
            response = doc["components"]["responses"][ref["$ref"].rsplit("/", 1)[-1]]
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Result"}, code
    # what the server answers on other paths and methods is said once, for every path
    assert {str(code) for _, code in FRAMEWORK_ERRORS.values()} <= answers | {"404", "405"}
    assert "404" in doc["info"]["description"] and "405" in doc["info"]["description"]


async def answers_on_one_connection(url: str, requests: list[bytes]) -> list[tuple[str, dict[str, str], bytes, bool]]:
    """Each request in turn on one connection: its answer's status line, headers (lower-case names), body, and
    whether the server closed the connection after it."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    answers = []
    try:
        for data in requests:
            writer.write(data)
            async with asyncio.timeout(10):
                line, headers, body = await read_answer(reader)
                try:
                    closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
                except TimeoutError:
                    closed = False
            answers.append((line, headers, body, closed))
            if closed:
                break
    finally:
        writer.close()
    return answers


async def test_a_push_is_answered_with_the_bytes_aiohttp_would_write(ingress: Ingress, unused_tcp_port: int) -> None:
    """The 200 of a push is written prebuilt on keep-alive HTTP/1.1 (server.Written): it must say what aiohttp's own
    ``web.Response`` says — same status line, headers and body, the connection kept or closed alike — on every kind
    of connection, with a Date of now."""
    push = orjson.dumps(status_push("prebuilt"))

    def request(version: str, *extra: str) -> bytes:
        return post_bytes("/notify/status", push, *extra, version=version)

    cases = {
        "keep-alive 1.1, twice, then Connection: close": [request("1.1"), request("1.1"),
                                                           request("1.1", "Connection: close")],
        "1.0": [request("1.0")],
        "1.0 keep-alive": [request("1.0", "Connection: keep-alive"), request("1.0")],
    }

    async def reference_handler(_: web.Request) -> web.Response:
        return web.Response(body=b'{"resultcode":"0","resultdesc":"Success"}', content_type="application/json",
                            charset="UTF-8")

    app = web.Application()
    app.router.add_post("/notify/status", reference_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        for name, requests in cases.items():
            ours = await answers_on_one_connection(ingress.url, requests)
            theirs = await answers_on_one_connection(f"http://127.0.0.1:{unused_tcp_port}", requests)
            assert len(ours) == len(theirs) == len(requests), name
            for (line, headers, body, closed), (line_ref, headers_ref, body_ref, closed_ref) in zip(
                    ours, theirs, strict=True):
                date = email.utils.parsedate_to_datetime(headers.pop("date"))
                assert abs(date.timestamp() - time.time()) < 5, (name, date)
                headers_ref.pop("date")
                assert (line, headers, body, closed) == (line_ref, headers_ref, body_ref, closed_ref), name
                assert contract_json(200, headers, body)["resultcode"] == "0"
    finally:
        await runner.cleanup()
    assert len(await read_all(ingress.settings, "status.raw", expect=6, idle=0.5)) == 6


def test_only_a_keep_alive_http_1_1_push_gets_the_prebuilt_200() -> None:
    """The comparison above holds the prebuilt bytes to aiohttp's only if they are what keep-alive 1.1 gets."""
    def request(version: HttpVersion, closing: bool) -> Any:
        return make_mocked_request("POST", "/notify/fee", version=version, closing=closing)

    assert isinstance(server.ok(request(HttpVersion11, closing=False)), server.Written)
    for other in (request(HttpVersion11, closing=True), request(HttpVersion10, closing=True),
                  request(HttpVersion10, closing=False)):
        assert isinstance(server.ok(other), web.Response)
