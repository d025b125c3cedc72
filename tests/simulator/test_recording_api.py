"""The recording API against real HTTP on loopback: AK/SK as documented, 301 + Location, files, faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
import pytest_asyncio

from voicecall import huawei
from voicecall.simulator import wav
from voicecall.simulator.recording_api import PATH, RecordingApi, check_auth

KEY, SECRET = "sim-key", "sim-secret"
AUTH = 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"'
APPS = {KEY: (SECRET,)}


def build_aksk_header(app_key: str, app_secret: str, now: str | None = None) -> str:
    """Huawei's official Python helper (devg-VoiceCall rtc_04_0019), with gmtime so Created is UTC anywhere."""
    now = now or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # Created
    nonce = str(uuid.uuid4()).replace("-", "")  # Nonce
    digist = hmac.new(app_secret.encode(), (nonce + now).encode(), digestmod=hashlib.sha256).digest()
    digest_base64 = base64.b64encode(digist).decode()  # PasswordDigest
    return f'UsernameToken Username="{app_key}",PasswordDigest="{digest_base64}",Nonce="{nonce}",Created="{now}"'


@pytest_asyncio.fixture
async def api() -> AsyncIterator[RecordingApi]:
    server = await RecordingApi(KEY, SECRET, max_skew=300).start()
    try:
        yield server
    finally:
        await server.stop()


async def ask(api: RecordingApi, name: str, domain: str = "rec.example", headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, str], bytes]:
    if headers is None:
        headers = {"Authorization": AUTH, "X-AKSK": build_aksk_header(KEY, SECRET),
                   "Content-Type": "application/json;charset=UTF-8"}
    async with aiohttp.ClientSession() as session, session.get(
            api.base_url + PATH, params={"fileName": name, "recordDomain": domain}, headers=headers,
            allow_redirects=False) as answer:
        return answer.status, dict(answer.headers), await answer.read()


def code(body: bytes) -> str:
    return str(orjson.loads(body)["resultcode"])


async def test_official_sample_signature_gets_301_and_the_file(api: RecordingApi) -> None:
    api.add_file("call-1.wav", 200_000, domain="rec.example")
    status, headers, _ = await ask(api, "call-1.wav")
    assert status == 301
    location = headers["Location"]
    assert location == api.base_url + "/files/call-1.wav"
    async with aiohttp.ClientSession() as session, session.get(location) as download:
        assert download.status == 200
        assert download.headers["Content-Type"] == "audio/wav"
        data = await download.read()
    assert len(data) == 200_000
    assert hashlib.sha256(data).hexdigest() == wav.sha256("call-1.wav", 200_000) == api.sha256("call-1.wav")
    # the project's own signer is accepted too, and with a space after each comma
    signed = huawei.x_aksk(KEY, SECRET).replace(",", ", ")
    status, _, _ = await ask(api, "call-1.wav", headers={"Authorization": AUTH, "X-AKSK": signed})
    assert status == 301


async def test_rejections_carry_the_documented_codes(api: RecordingApi) -> None:
    api.add_file("call-2.wav", 1000, domain="rec.example")
    wrong_secret = {"Authorization": AUTH, "X-AKSK": build_aksk_header(KEY, "not-the-secret")}
    stale_created = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = {"Authorization": AUTH, "X-AKSK": build_aksk_header(KEY, SECRET, stale_created)}
    cases = [
        (wrong_secret, "1023006"),
        ({"X-AKSK": build_aksk_header(KEY, SECRET)}, "1023006"),  # no Authorization
        ({"Authorization": AUTH}, "1023033"),  # no X-AKSK
        (stale, "1010013"),
        ({"Authorization": AUTH, "X-AKSK": build_aksk_header("other-key", SECRET)}, "1010003"),
        ({"Authorization": 'AKSK realm="XYZ",profile="UsernameToken",type="Appkey"',
          "X-AKSK": build_aksk_header(KEY, SECRET)}, "1023009"),
    ]
    for headers, expected in cases:
        status, _, body = await ask(api, "call-2.wav", headers=headers)
        assert (status, code(body)) == (400, expected), headers
    assert api.attempts["call-2.wav"] == 0  # rejected requests never reach the file


def test_check_auth_header_parts() -> None:
    now = datetime.now(UTC)
    good = build_aksk_header(KEY, SECRET)
    assert check_auth(AUTH, good, APPS, now) is None
    nonce_missing = good.replace('Nonce="', 'Nonsense="')
    for authorization, x_aksk, expected in [
        ('AKSK profile="UsernameToken",type="Appkey"', good, "1023007"),
        ('AKSK realm="SDP",type="Appkey"', good, "1023008"),
        ('AKSK realm="SDP",profile="Token",type="Appkey"', good, "1023010"),
        ('AKSK realm="SDP",profile="UsernameToken",type="Other"', good, "1023011"),
        ('AKSK realm="SDP",profile="UsernameToken"', good, "1023012"),
        (AUTH, good.replace("UsernameToken ", "Token "), "1023038"),
        (AUTH, nonce_missing, "1023035"),
        (AUTH, good.replace("PasswordDigest", "Digest"), "1023037"),
    ]:
        rejection = check_auth(authorization, x_aksk, APPS, now)
        assert rejection is not None and rejection.code == expected, (authorization, x_aksk)
    future = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rejection = check_auth(AUTH, build_aksk_header(KEY, SECRET, future), APPS, now, max_skew=300)
    assert rejection is not None and rejection.code == "1010013"


async def test_missing_file_and_wrong_domain_are_404_1012007(api: RecordingApi) -> None:
    api.add_file("call-3.wav", 1000, domain="rec.example")
    for name, domain in (("nope.wav", "rec.example"), ("call-3.wav", "other.example")):
        status, _, body = await ask(api, name, domain)
        assert (status, code(body)) == (404, "1012007")
    status, _, body = await ask(api, "call-3.wav", domain="")
    assert (status, code(body)) == (400, "1010002")


async def test_first_attempts_answer_503_then_301(api: RecordingApi) -> None:
    api.add_file("flaky.wav", 1000, domain="rec.example", fail_first=2)
    statuses = [(await ask(api, "flaky.wav"))[0] for _ in range(3)]
    assert statuses == [503, 503, 301]
    api.fail_first = 1  # the server-wide default applies to files without their own setting
    api.add_file("flaky-2.wav", 1000)
    assert [(await ask(api, "flaky-2.wav", "any.domain"))[0] for _ in range(2)] == [503, 301]


async def test_slow_answers(api: RecordingApi) -> None:
    api.add_file("slow.wav", 1000, delay=0.3)
    began = time.monotonic()
    status, _, _ = await ask(api, "slow.wav")
    assert status == 301
    assert time.monotonic() - began >= 0.3


async def test_range_and_large_streamed_file(api: RecordingApi) -> None:
    size = 30 * 1024 * 1024
    url = api.add_file("big.wav", size)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Range": "bytes=1000-1999"}) as part:
            assert part.status == 206
            assert part.headers["Content-Range"] == f"bytes 1000-1999/{size}"
            assert await part.read() == b"".join(wav.chunks("big.wav", size, 1000, 2000))
        digest = hashlib.sha256()
        async with session.get(url) as whole:
            assert whole.headers["Content-Length"] == str(size)
            async for piece in whole.content.iter_chunked(1 << 20):
                digest.update(piece)
    assert digest.hexdigest() == await asyncio.to_thread(wav.sha256, "big.wav", size)
    assert api.downloads_completed == 2


async def test_several_apps_each_file_to_its_own_app() -> None:
    async with RecordingApi(KEY, SECRET, apps={"app-b": ["b-old", "b-new"]}) as api:
        api.add_file("a.wav", 1000, domain="rec.example")  # the first app's
        api.add_file("b.wav", 1000, domain="rec.example", app_key="app-b")

        def signed(app: str, secret: str) -> dict[str, str]:
            return {"Authorization": AUTH, "X-AKSK": build_aksk_header(app, secret)}

        assert (await ask(api, "b.wav", headers=signed("app-b", "b-old")))[0] == 301  # either secret of a rotation
        assert (await ask(api, "b.wav", headers=signed("app-b", "b-new")))[0] == 301
        assert (await ask(api, "a.wav", headers=signed(KEY, SECRET)))[0] == 301
        status, _, body = await ask(api, "b.wav", headers=signed(KEY, SECRET))  # valid, but not its app
        assert (status, code(body)) == (404, "1012007")
        status, _, body = await ask(api, "a.wav", headers=signed("app-b", "b-new"))
        assert (status, code(body)) == (404, "1012007")
        assert api.answers["404 1012007 other app"] == 2
        status, _, body = await ask(api, "b.wav", headers=signed("app-b", SECRET))  # another app's secret
        assert (status, code(body)) == (400, "1023006")
        status, _, body = await ask(api, "b.wav", headers=signed("app-c", "x"))
        assert (status, code(body)) == (400, "1010003")
        with pytest.raises(ValueError, match="unknown app"):
            api.add_file("c.wav", 1000, app_key="app-c")


async def test_fetched_counts_files_downloaded_to_their_last_byte(api: RecordingApi) -> None:
    url = api.add_file("whole.wav", 10_000)
    api.add_file("partial.wav", 10_000)
    async with aiohttp.ClientSession() as session:
        async with session.get(api.file_url("partial.wav"), headers={"Range": "bytes=0-99"}) as part:
            await part.read()
        assert api.fetched == set()
        async with session.get(url, headers={"Range": "bytes=0-4999"}) as first:
            await first.read()
        async with session.get(url, headers={"Range": "bytes=5000-"}) as rest:  # a resumed download
            await rest.read()
    assert api.fetched == {"whole.wav"}
