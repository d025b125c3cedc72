"""The pusher against a real HTTP receiver with faults on: apps and signatures, late and duplicated status pushes,
withheld CDRs, and a summary whose numbers reconcile with what the receiver saw."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from simulator_support import START, SUCCESS, Receiver
from test_signing import verify

from voicecall import huawei
from voicecall.simulator import pushes
from voicecall.simulator.calls import generate
from voicecall.simulator.platform import Platform
from voicecall.simulator.recording_api import PATH, RecordingApi

FAST = {"speed": 0.0, "start_time": START}
APPS = {"app-a": "secret-a", "app-b": ["secret-b1", "secret-b2"]}


def secrets_of(app: str) -> tuple[str, ...]:
    value = APPS[app]
    return (value,) if isinstance(value, str) else tuple(value)


def fee_records(receiver: Receiver) -> list[dict[str, Any]]:
    return [record for push in receiver.on("/notify/fee") for record in push.json["feeLst"]]


def disconnects(receiver: Receiver) -> dict[str, str]:
    """sessionId → timestamp of the disconnect pushes the receiver got."""
    return {push.json["statusInfo"]["sessionId"]: push.json["statusInfo"]["timestamp"]
            for push in receiver.on("/notify/status") if push.json["eventType"] == "disconnect"}


async def test_pushes_are_signed_with_their_calls_app(receiver: Receiver) -> None:
    summary = await Platform(receiver.status_url, receiver.fee_url, seed=21, calls=60, apps=APPS, **FAST).run()
    app_of = {record["sessionId"]: record["appKey"] for record in fee_records(receiver)}
    assert set(app_of.values()) == {"app-a", "app-b"} and summary.apps == {"app-a": 30, "app-b": 30}
    for push in receiver.pushes:
        url = receiver.status_url if push.path == "/notify/status" else receiver.fee_url
        username = huawei.parse_x_aksk(push.headers["X-AKSK"])["Username"]
        if push.path == "/notify/status":
            assert app_of[push.json["statusInfo"]["sessionId"]] == username
        else:
            assert {record["appKey"] for record in push.json["feeLst"]} == {username}  # merged per app
        assert verify(push.headers["X-AKSK"], url, secrets_of(username)[:1], ("newline",))
        other = "app-b" if username == "app-a" else "app-a"
        assert not verify(push.headers["X-AKSK"], url, secrets_of(other))
    assert summary.signatures == {"valid": len(receiver.pushes)}
    assert summary.signing == "newline digest, Created utc"
    receiver.pushes.clear()
    unsigned = await Platform(receiver.status_url, receiver.fee_url, seed=21, calls=5, apps=APPS, sign_pushes=False,
                              **FAST).run()
    assert not any("X-AKSK" in push.headers for push in receiver.pushes) and unsigned.signing == "off"


async def test_signature_faults_reach_the_receiver_in_their_shares(receiver: Receiver) -> None:
    summary = await Platform(receiver.status_url, receiver.fee_url, seed=22, calls=300, rate=50, apps=APPS,
                             push_digest="concat", bad_signature_share=0.1, replayed_nonce_share=0.05,
                             unsigned_share=0.05, **FAST).run()
    seen: Counter[str] = Counter()
    nonces: set[tuple[str, str]] = set()
    for push in receiver.pushes:
        if "X-AKSK" not in push.headers:
            seen["unsigned"] += 1
            continue
        fields = huawei.parse_x_aksk(push.headers["X-AKSK"])
        url = receiver.status_url if push.path == "/notify/status" else receiver.fee_url
        if not verify(push.headers["X-AKSK"], url, secrets_of(fields["Username"]), ("concat",)):
            seen["bad-digest"] += 1
        elif (fields["Username"], fields["Nonce"]) in nonces:
            seen["replayed-nonce"] += 1  # what a receiver sees, whichever copy of the header came first
        else:
            seen["valid"] += 1
        nonces.add((fields["Username"], fields["Nonce"]))
    assert seen == summary.signatures
    total = len(receiver.pushes)
    assert seen["bad-digest"] / total == pytest.approx(0.1, abs=0.03)
    assert seen["replayed-nonce"] / total == pytest.approx(0.05, abs=0.02)
    assert seen["unsigned"] / total == pytest.approx(0.05, abs=0.02)


async def test_late_and_duplicated_status_pushes_arrive_as_counted(receiver: Receiver) -> None:
    platform = Platform(receiver.status_url, receiver.fee_url, seed=23, calls=300, rate=50, late_share=0.25,
                        duplicate_share=0.15, **FAST)
    summary = await platform.run()
    position = {pushes.status_body(event.body): n
                for call in generate(platform.options, 300) for n, event in enumerate(call.status)}
    arrivals = Counter(push.body for push in receiver.on("/notify/status"))
    highest: dict[str, int] = {}
    out_of_order = 0
    firsts: set[bytes] = set()
    for push in receiver.on("/notify/status"):
        if push.body in firsts:
            continue
        firsts.add(push.body)
        session, where = push.json["statusInfo"]["sessionId"], position[push.body]
        out_of_order += where < highest.get(session, -1)
        highest[session] = max(where, highest.get(session, -1))
    assert out_of_order == summary.status_late > 0.2 * (len(arrivals) - 300)
    assert sum(count == 2 for count in arrivals.values()) == summary.status_duplicated > 0
    assert set(arrivals.values()) <= {1, 2}
    assert len(arrivals) == summary.status_events and sum(arrivals.values()) == summary.status_pushes
    assert summary.lost == 0 and summary.fee_records_delivered == 300


async def test_withheld_cdrs_are_the_calls_that_should_end_missing(receiver: Receiver) -> None:
    grace = 120.0
    summary = await Platform(receiver.status_url, receiver.fee_url, seed=24, calls=200, rate=20,
                             lost_cdr_share=0.2, cdr_grace=grace, **FAST).run()
    ended = disconnects(receiver)
    with_cdr = {record["sessionId"] for record in fee_records(receiver)}
    without = set(ended) - with_cdr
    assert len(without) == summary.fee_records_withheld == summary.missing.count > 20
    assert summary.missing.reasons == {"withheld": len(without)}
    assert summary.lost == 0 and summary.unfinished == 0
    times = sorted(huawei.parse_time(ended[session]) for session in without)  # type: ignore[type-var]
    expected = summary.as_dict()["missing_expected"]
    assert expected["from"] == f"{times[0] + timedelta(seconds=grace):%Y-%m-%dT%H:%M:%SZ}"  # type: ignore[operator]
    assert expected["until"] == f"{times[-1] + timedelta(seconds=grace):%Y-%m-%dT%H:%M:%SZ}"  # type: ignore[operator]
    text = summary.text()
    assert f"cdr missing      {len(without)} calls should end missing" in text and "grace 2m" in text


async def test_missing_forecast_counts_cdrs_given_up_pending_and_unpushed_at_stop(receiver: Receiver) -> None:
    receiver.rule = lambda path, number, body: (503, None) if path == "/notify/fee" else (200, SUCCESS)
    stop = asyncio.Event()
    # 40x real time, calls of up to a few minutes: stopped while some calls are still going on
    platform = Platform(receiver.status_url, receiver.fee_url, seed=25, rate=2, speed=40,
                        start_time=datetime.now(UTC), repush_interval=3600, mix={"verify": 1.0})
    run = asyncio.create_task(platform.run(stop))
    for _ in range(400):
        if len(receiver.on("/notify/fee")) >= 3:
            break
        await asyncio.sleep(0.02)
    stop.set()
    summary = await asyncio.wait_for(run, 10)
    ended = disconnects(receiver)
    assert summary.missing.count == len(ended) > 0  # no CDR was ever accepted
    assert summary.missing.reasons.keys() <= {"pending re-push at stop", "not pushed before stop"}
    assert summary.missing.reasons["pending re-push at stop"] == summary.fee_records_pending > 0
    assert summary.calls > len(ended)  # some calls were still going on: they never end, so never missing


async def test_recordings_reconcile_with_what_the_receiver_fetched(receiver: Receiver) -> None:
    async with RecordingApi("app-a", "secret-a", apps={"app-b": APPS["app-b"]}) as api:
        platform = Platform(receiver.status_url, receiver.fee_url, seed=26, calls=400, rate=50,
                            mix={"callback": 1.0}, record_share=0.8, missing_share=0.2, url_only_share=0.2,
                            lost_cdr_share=0.1, apps=APPS, recording_api=api, **FAST)
        summary = await platform.run()
        recorded = [record for record in fee_records(receiver) if record["recordFlag"] == 1]
        fetched = not_found = 0
        async with aiohttp.ClientSession() as session:
            for record in recorded[::2]:  # the "pipeline" fetches half of them, each with its CDR's app
                fetched_one = await fetch(session, api, record)
                fetched += fetched_one
                not_found += not fetched_one
                if fetched_one and "recordObjectName" in record:  # another app cannot see it
                    other = "app-b" if record["appKey"] == "app-a" else "app-a"
                    assert await locate(session, api, record, other) == 404
        platform.count_fetched()
    missing_delivered = sum(1 for r in recorded if name_of(r) not in api.files)
    assert summary.recording_cdrs["delivered"] == len(recorded)
    assert summary.recordings_missing_delivered == missing_delivered > 0
    assert summary.recordings_fetched == fetched > 0
    assert summary.recordings_unfetched == len(recorded) - missing_delivered - fetched
    assert summary.recordings == len(recorded) + summary.recording_cdrs["withheld"]
    assert summary.recording_cdrs["withheld"] > 0
    assert summary.recordings + sum(summary.no_recording.values()) == summary.calls
    assert summary.no_recording.keys() == {"not asked", "not answered", "under 3 s"}
    assert api.answers["404 1012007 other app"] > 0
    text = summary.text()
    assert f"fetched whole {fetched} (→ recording.stored)" in text
    assert f"missing on purpose {missing_delivered} (→ recording.failed)" in text


def name_of(record: dict[str, Any]) -> str:
    return str(record.get("recordObjectName") or record["recordFileDownloadUrl"].rsplit("/", 1)[1])


async def locate(session: aiohttp.ClientSession, api: RecordingApi, record: dict[str, Any], app: str) -> int:
    headers = huawei.auth_headers(app, secrets_of(app)[-1])  # either secret of a rotating app works
    params = {"fileName": record["recordObjectName"], "recordDomain": record["recordDomain"]}
    async with session.get(api.base_url + PATH, params=params, headers=headers, allow_redirects=False) as answer:
        return answer.status


async def fetch(session: aiohttp.ClientSession, api: RecordingApi, record: dict[str, Any]) -> bool:
    url = record.get("recordFileDownloadUrl")
    if not url:
        status = await locate(session, api, record, record["appKey"])
        if status == 404:
            return False
        assert status == 301
        url = api.file_url(record["recordObjectName"])
    async with session.get(url) as download:
        if download.status == 404:
            return False
        await download.read()
        return download.status == 200


async def test_created_of_signed_pushes_is_now(receiver: Receiver) -> None:
    await Platform(receiver.status_url, receiver.fee_url, seed=27, calls=2, app_key="k", app_secret="s",
                   **FAST).run()
    assert receiver.pushes  # a secret given: signed by default
    now = datetime.now(UTC)
    for push in receiver.pushes:
        created = datetime.strptime(huawei.parse_x_aksk(push.headers["X-AKSK"])["Created"], "%Y-%m-%dT%H:%M:%SZ")
        assert abs((created.replace(tzinfo=UTC) - now).total_seconds()) < 30
