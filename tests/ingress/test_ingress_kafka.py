"""The live ingress against the real broker: topics, keys, headers, deadletter, path token, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from ingress_helpers import (
    F2,
    STATUS_EXAMPLES,
    Ingress,
    fee_push,
    ingress_settings,
    running_ingress,
    start_ingress,
    wait_ready,
)

from kafka_helpers import create_topics, read_all
from voicecall.runtime.cloudevents import header

OK = {"resultcode": "0", "resultdesc": "Success"}


async def test_every_reference_example_lands_with_topic_key_and_headers(ingress: Ingress, post: Callable[..., Any]
                                                                        ) -> None:
    for name, body in STATUS_EXAMPLES.items():
        # Content-Type does not matter: the body is parsed as JSON whatever it says.
        status, answer = await post(f"{ingress.url}/notify/status", body, headers={"Content-Type": "text/plain"})
        assert (status, answer) == (200, OK), name
    status, answer = await post(f"{ingress.url}/notify/fee", F2)
    assert (status, answer) == (200, OK)
    status_records = await read_all(ingress.settings, "status.raw", expect=len(STATUS_EXAMPLES), idle=0.5)
    assert len(status_records) == len(STATUS_EXAMPLES)
    by_type: dict[str, list[Any]] = {}
    for record in status_records:
        by_type.setdefault(header(record.headers, "ce_type") or "", []).append(record)
    for name, body in STATUS_EXAMPLES.items():
        doc = orjson.loads(body)
        matches = [r for r in by_type[f"com.huaweicloud.voicecall.status.{doc['eventType']}"]
                   if orjson.loads(r.value) == doc["statusInfo"]]
        assert matches, name
        record = matches[0]
        assert record.key == doc["statusInfo"]["sessionId"].encode()
        assert header(record.headers, "ce_specversion") == "1.0"
        assert header(record.headers, "content-type") == "application/json"
        for name_ in ("ce_id", "ce_source", "ce_time", "voicecall_received", "voicecall_push_id"):
            assert header(record.headers, name_), name_
    fees = await read_all(ingress.settings, "fee.raw", expect=2, idle=0.5)
    assert len(fees) == 2
    assert {r.key for r in fees} == {b"1200_366_0_20161228102743@callenabler.home1.com"}
    assert all(header(r.headers, "ce_type") == "com.huaweicloud.voicecall.fee" for r in fees)
    assert orjson.loads(fees[0].value)["callEndTime"] == "2016-12-26  01:19:46"  # verbatim


async def test_fifty_record_push_and_repush_keep_every_ce_id(ingress: Ingress, post: Callable[..., Any]) -> None:
    push = fee_push(50)
    assert (await post(f"{ingress.url}/notify", push))[0] == 200
    assert (await post(f"{ingress.url}/notify/fee", push))[0] == 200  # the platform's hourly re-push
    records = await read_all(ingress.settings, "fee.raw", expect=100, idle=0.5)
    assert len(records) == 100
    ids: dict[bytes, set[str | None]] = {}
    pushes: set[str | None] = set()
    for record in records:
        ids.setdefault(record.key, set()).add(header(record.headers, "ce_id"))
        pushes.add(header(record.headers, "voicecall_push_id"))
    assert len(ids) == 50 and all(len(v) == 1 for v in ids.values())  # same id for the same CDR both times
    assert len(pushes) == 2  # but each push has its own push id


async def test_bad_inputs_answer_exactly_and_go_to_deadletter(ingress: Ingress, post: Callable[..., Any]) -> None:
    url = ingress.url
    cases: list[tuple[str, bytes | dict[str, Any], int, str]] = [
        ("/notify", b"{not json", 400, "not-json"),
        ("/notify", b"[1,2,3]", 400, "not-an-object"),
        ("/notify/status", {"statusInfo": {"sessionId": "x"}}, 400, "missing-event-type"),
        ("/notify/fee", {"eventType": "fee"}, 400, "missing-fee-list"),
        ("/notify/fee", fee_push(51), 400, "invalid-shape"),
        ("/notify", b'{"eventType":"answer","statusInfo":{"sessionId":"\xff"}}', 400, "invalid-utf8"),
        ("/notify", b" " * (2 << 20), 413, "too-large"),
        ("/notify", {"eventType": "callin", "statusInfo": {"sessionId": "u1"}}, 200, "unknown-event-type"),
    ]
    for path, body, expected, _ in cases:
        status, answer = await post(url + path, body)
        assert status == expected, (path, status, answer)
        if expected == 400:
            assert answer["resultcode"] == "1" and answer["resultdesc"]
        if expected == 200:
            assert answer == OK
    records = await read_all(ingress.settings, "deadletter", expect=len(cases), idle=0.5)
    reasons = [orjson.loads(r.value)["reason"] for r in records]
    assert sorted(reasons) == sorted(reason for *_, reason in cases)
    for record in records:
        value = orjson.loads(record.value)
        assert value["stage"] == "ingress" and value["origin"]["client"] == "127.0.0.1"
        assert value["origin"]["path"].startswith("/notify")
        assert header(record.headers, "ce_type") == "voicecall.deadletter"
        if value["reason"] == "too-large":
            assert value["truncated"] is True and len(value["payload"]) == 512 * 1024
    # Nothing reached the event topics.
    assert await read_all(ingress.settings, "status.raw", expect=0, timeout=1, idle=0.5) == []
    assert await read_all(ingress.settings, "fee.raw", expect=0, timeout=1, idle=0.5) == []


async def test_path_token_hides_everything_else(kafka_bootstrap: str, tmp_path: Path,
                                                post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_path_token="s3cret-token-1")
    async with running_ingress(settings) as served:
        push = fee_push(1)
        for path in ("/notify", "/notify/fee", "/notify/wrong-token/fee", "/notify/s3cret-token-1/other"):
            assert (await post(served.url + path, push))[0] == 404, path
        assert (await post(f"{served.url}/notify/s3cret-token-1/fee", push))[0] == 200
        assert (await post(f"{served.url}/notify/s3cret-token-1", push))[0] == 200
        assert (await post(f"{served.url}/notify/s3cret-token-1/status", b"[]"))[0] == 400
        assert len(await read_all(settings, "fee.raw", expect=2, idle=0.5)) == 2
        [dead] = await read_all(settings, "deadletter", expect=1, idle=0.5)
        assert orjson.loads(dead.value)["origin"]["path"] == "/notify/{token}/status"  # the token stays secret


async def test_client_allowlist_and_trusted_proxy(kafka_bootstrap: str, tmp_path: Path,
                                                  post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_allow=["10.0.0.0/8"],
                                ingress_trusted_proxies=["127.0.0.1/32"])
    async with running_ingress(settings) as served:
        assert (await post(f"{served.url}/notify", fee_push(1)))[0] == 403
        forwarded = {"X-Forwarded-For": "10.1.2.3"}
        assert (await post(f"{served.url}/notify", fee_push(1), headers=forwarded))[0] == 200
        spoofed = {"X-Forwarded-For": "10.1.2.3, 192.0.2.1"}  # the right-most untrusted hop is the client
        assert (await post(f"{served.url}/notify", fee_push(1), headers=spoofed))[0] == 403


async def test_readiness_health_and_metrics(ingress: Ingress, post: Callable[..., Any]) -> None:
    assert (await post(f"{ingress.url}/notify", fee_push(3)))[0] == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{ingress.url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{ingress.url}/readyz") as response:
            ready = await response.json()
            assert response.status == 200 and ready["broker"] == "up" and ready["spool"]["usable"] is True
        async with session.get(f"{ingress.url}/metrics") as response:
            text = await response.text()
    fee_topic = f"{ingress.settings.topic_prefix}fee.raw"
    assert f'voicecall_ingress_records_published_total{{topic="{fee_topic}"}}' in text
    assert 'voicecall_ingress_requests_total{path="notify",status="200"}' in text
    assert "voicecall_ingress_durable_seconds_bucket" in text and "voicecall_ingress_spool_bytes" in text


async def test_starts_without_kafka_and_spools_until_it_comes(tmp_path: Path, post: Callable[..., Any]) -> None:
    """No broker at all: pushes are still answered 200 from the spool; /readyz says broker down, spool usable."""
    from voicecall.devenv.ports import free_port

    settings = ingress_settings(f"127.0.0.1:{free_port()}", tmp_path / "spool")
    served = await start_ingress(settings)
    try:
        assert (await post(f"{served.url}/notify", fee_push(2)))[0] == 200
        ready = await wait_ready(served.url, broker="down")
        assert ready["spool"]["entries"] == 1 and ready["spool"]["usable"] is True
    finally:
        await asyncio.wait_for(served.stop(), 30)


async def test_leftovers_of_a_previous_run_are_drained_at_start(kafka_bootstrap: str, tmp_path: Path,
                                                                 post: Callable[..., Any]) -> None:
    from voicecall.ingress.parse import Parser
    from voicecall.ingress.spool import Spool

    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool")
    await create_topics(settings)
    parser = Parser(settings)
    left = Spool(tmp_path / "spool", 1 << 20, 1 << 12)  # small segments: several files to drain in order
    left.open()
    for i in range(30):
        outcome = parser.parse(orjson.dumps(fee_push(2, tag=f"old{i}-")), received="2026-01-01T00:00:00.000Z",
                               push_id=f"old-{i}", origin={"path": "/notify", "client": "c"})
        await left.append(outcome.records)
    segments = len(left.segments)
    await left.close()
    assert segments > 1

    served = await start_ingress(settings)
    try:
        await wait_ready(served.url)
        records = await read_all(settings, "fee.raw", expect=60, idle=0.5)
        assert len(records) == 60
        # In order within each key's partition: the spool drains oldest first.
        pushes = [header(r.headers, "voicecall_push_id") for r in records]
        assert set(pushes) == {f"old-{i}" for i in range(30)}
        for _ in range(50):
            ready = await wait_ready(served.url)
            if ready["spool"]["segments"] == 0:
                break
            await asyncio.sleep(0.1)
        assert ready["spool"] == {**ready["spool"], "entries": 0, "segments": 0}
        assert not list((tmp_path / "spool").glob("*.seg"))
        assert (await post(f"{served.url}/notify", fee_push(1, tag="new-")))[0] == 200
    finally:
        await served.stop()


async def test_503_when_kafka_is_away_and_the_spool_is_full(tmp_path: Path, post: Callable[..., Any]) -> None:
    from voicecall.devenv.ports import free_port

    settings = ingress_settings(f"127.0.0.1:{free_port()}", tmp_path / "spool", ingress_spool_max_bytes=1 << 16)
    served = await start_ingress(settings)
    try:
        codes = [(await post(f"{served.url}/notify", fee_push(10, tag=f"p{i}-")))[0] for i in range(40)]
        first_503 = codes.index(503)
        assert first_503 > 0 and all(c == 200 for c in codes[:first_503])
        status, answer = await post(f"{served.url}/notify", fee_push(10, tag="again-"))
        assert status == 503 and answer["resultcode"] == "1"
        ready = await wait_ready(served.url, broker="down")
        assert ready["spool"]["bytes"] <= 1 << 16
    finally:
        await asyncio.wait_for(served.stop(), 30)
