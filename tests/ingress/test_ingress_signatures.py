"""Push signatures on the live ingress and the real broker: enforce answers 401 and keeps the push in deadletter
with its check; log answers 200 with the outcome on every record; off writes ``unchecked``; the public URL; the
apps file rotated and swapped under a running ingress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from ingress_helpers import Ingress, fee_push, ingress_settings, running_ingress, status_push, write_apps

from contract_helpers import validate_record
from kafka_helpers import read_all
from voicecall import apps as apps_module, huawei
from voicecall.ingress import metrics
from voicecall.runtime.cloudevents import header
from voicecall.simulator import signing

Post = Callable[..., Any]


def running(kafka_bootstrap: str, tmp_path: Path, **overrides: Any) -> AbstractAsyncContextManager[Ingress]:
    return running_ingress(ingress_settings(kafka_bootstrap, tmp_path / "spool", **overrides))


def signed(url: str, app: str = "app", secret: str = "secret", *, skew: float = 0.0) -> dict[str, str]:
    nonce = huawei.new_nonce()
    created = signing.push_created("utc", datetime.now(UTC) + timedelta(seconds=skew))
    value = huawei.format_x_aksk(app, huawei.push_digest(secret, url, nonce, created), nonce, created)
    return {"Authorization": huawei.AUTHORIZATION, "X-AKSK": value}


def outcomes() -> dict[str, int]:
    return {labels[0]: value for labels, value in metrics.SIGNATURES.values.items()}


async def test_enforce_answers_401_and_keeps_the_push_in_deadletter_with_its_check(
        kafka_bootstrap: str, tmp_path: Path, post: Post) -> None:
    async with running(kafka_bootstrap, tmp_path, ingress_signature="enforce", huawei_app_key="app",
                       huawei_app_secret="secret") as ingress:
        url = f"{ingress.url}/notify/status"
        good = signed(url)
        before = outcomes()
        assert (await post(url, status_push("ok"), headers=good))[0] == 200
        cases = {
            "absent": ({}, "the push carries no X-AKSK signature"),
            "invalid:digest": (signed(url, secret="wrong"), "signature check failed: digest"),
            "invalid:replayed-nonce": (good, "signature check failed: replayed-nonce"),
            "invalid:skew": (signed(url, skew=3600), "signature check failed: skew"),
            "invalid:unknown-app": (signed(url, app="stranger"), "signature check failed: unknown-app"),
            "invalid:malformed-header": ({"X-AKSK": "UsernameToken Username=\"app\""},
                                         "signature check failed: malformed-header"),
        }
        for outcome, (headers, detail) in cases.items():
            status, answer, response_headers = await post_raw(url, status_push(outcome), headers)
            assert (status, answer) == (401, {"resultcode": "1", "resultdesc": detail}), outcome
            assert response_headers.get("WWW-Authenticate") == huawei.AUTHORIZATION
        after = outcomes()
        assert {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)} \
            == {"valid": 1, **{outcome: 1 for outcome in cases}}
        statuses = await read_all(ingress.settings, "status.raw", expect=1, idle=0.5)
        assert [record.key for record in statuses] == [b"ok"]  # nothing of a refused push got through
        assert header(statuses[0].headers, "voicecall-signature") == "valid"
        dead = await read_all(ingress.settings, "deadletter", expect=len(cases), idle=0.5)
        by_key = {record.key.decode(): record for record in dead}
        assert set(by_key) == set(cases)
        for record in [*statuses, *dead]:  # the header fits the published contract (schemas/asyncapi.yaml)
            validate_record(record.topic, record.key, record.value, record.headers, ingress.settings.topic_prefix)
        for outcome, (_, detail) in cases.items():
            value = orjson.loads(by_key[outcome].value)
            assert (value["reason"], value["detail"], value["stage"]) == ("bad-signature", detail, "ingress")
            assert value["payload"] == status_push(outcome)  # the push as received
            assert header(by_key[outcome].headers, "voicecall-signature") == outcome


async def post_raw(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, Any]:
    """Status, JSON answer and response headers of one push."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url, data=orjson.dumps(body),
                                                                headers=headers) as response:
        return response.status, orjson.loads(await response.read()), response.headers


async def test_log_answers_200_with_the_outcome_on_every_record_of_a_fee_push(
        kafka_bootstrap: str, tmp_path: Path, post: Post) -> None:
    """The simulator's signer (valid, bad digests, replays, unsigned in shares) against the ingress in log mode:
    every push is kept, and every one of its records says what its signature was."""
    async with running(kafka_bootstrap, tmp_path, huawei_app_key="app", huawei_app_secret="secret") as ingress:
        assert ingress.settings.ingress_signature == "log"  # the default
        url = f"{ingress.url}/notify/fee"
        signer = signing.Signer({"app": ("secret",)}, bad_share=0.2, replay_share=0.2, unsigned_share=0.2, seed=7)
        expected = {signing.VALID: "valid", signing.BAD_DIGEST: "invalid:digest",
                    signing.REPLAYED: "invalid:replayed-nonce", signing.UNSIGNED: "absent"}
        kinds: dict[str, str] = {}
        for index in range(40):
            headers, kind = signer.headers(url, "app")
            kinds[f"p{index}-"] = expected[kind]
            assert (await post(url, fee_push(3, f"p{index}-"), headers=headers))[0] == 200
        assert set(kinds.values()) == set(expected.values())  # every kind was sent
        records = await read_all(ingress.settings, "fee.raw", expect=120, idle=0.5)
        assert len(records) == 120
        for record in records:
            tag = record.key.decode().split("sess-")[0]
            assert header(record.headers, "voicecall-signature") == kinds[tag], tag


async def test_off_checks_nothing_and_says_unchecked(kafka_bootstrap: str, tmp_path: Path, post: Post) -> None:
    async with running(kafka_bootstrap, tmp_path, ingress_signature="off") as ingress:
        url = f"{ingress.url}/notify/fee"
        assert (await post(url, fee_push(2, "off-"), headers=signed(url, secret="anything")))[0] == 200
        records = await read_all(ingress.settings, "fee.raw", expect=2, idle=0.5)
        assert [header(r.headers, "voicecall-signature") for r in records] == ["unchecked", "unchecked"]


async def test_the_signed_url_is_the_public_url_plus_the_path(kafka_bootstrap: str, tmp_path: Path,
                                                              post: Post) -> None:
    """Behind a proxy the platform signs the URL registered with it, not the one the ingress sees."""
    async with running(kafka_bootstrap, tmp_path, ingress_signature="enforce", huawei_app_key="app",
                       huawei_app_secret="secret", ingress_public_url="https://sp.example.com/") as ingress:
        local = f"{ingress.url}/notify/fee"
        assert (await post(local, fee_push(1, "pub-"),
                           headers=signed("https://sp.example.com/notify/fee")))[0] == 200
        status, answer = await post(local, fee_push(1, "loc-"), headers=signed(local))
        assert (status, answer["resultdesc"]) == (401, "signature check failed: digest")


async def until_status(post: Post, url: str, make: Callable[[], dict[str, str]], status: int,
                       timeout: float = 10.0) -> None:
    """Push (each time freshly signed) until the ingress answers ``status``: the file is looked at once a second."""
    deadline = asyncio.get_running_loop().time() + timeout
    answered = None
    while asyncio.get_running_loop().time() < deadline:
        answered = (await post(url, status_push(huawei.new_nonce()), headers=make()))[0]
        if answered == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"still {answered}, not {status}")


async def test_rotation_with_the_file_swapped_under_a_running_ingress(kafka_bootstrap: str, tmp_path: Path,
                                                                      post: Post) -> None:
    apps_file = tmp_path / "apps.json"
    write_apps(apps_file, {"app": "old-secret", "other": "other-secret"})
    async with running(kafka_bootstrap, tmp_path, ingress_signature="enforce",
                       huawei_apps_file=str(apps_file)) as ingress:
        url = f"{ingress.url}/notify/status"

        def old() -> dict[str, str]:
            return signed(url, secret="old-secret")

        def new() -> dict[str, str]:
            return signed(url, secret="new-secret")

        assert (await post(url, status_push("r1"), headers=old()))[0] == 200
        assert (await post(url, status_push("r2"), headers=new()))[0] == 401
        # step 1: the new secret is added next to the old one; while both are listed, both verify
        write_apps(apps_file, {"app": ["old-secret", "new-secret"], "other": "other-secret"})
        await until_status(post, url, new, 200)
        for _ in range(5):
            assert (await post(url, status_push(huawei.new_nonce()), headers=old()))[0] == 200
            assert (await post(url, status_push(huawei.new_nonce()), headers=new()))[0] == 200
        # step 3: the old secret is dropped once the platform signs with the new one
        write_apps(apps_file, {"app": "new-secret", "other": "other-secret"})
        await until_status(post, url, old, 401)
        assert (await post(url, status_push("r3"), headers=new()))[0] == 200
        # a broken file keeps the last good apps, and says so
        write_apps(apps_file, b'{"app": "new-secret", ')
        await asyncio.sleep(1.5)
        assert (await post(url, status_push("r4"), headers=new()))[0] == 200
        assert (await post(url, status_push("r5"), headers=signed(url, "other", "other-secret")))[0] == 200
        assert apps_module.BROKEN._value.get() == 1
        write_apps(apps_file, {"app": "new-secret"})
        await until_status(post, url, lambda: signed(url, "other", "other-secret"), 401)
        assert apps_module.BROKEN._value.get() == 0
