"""The platform's recording API (获取录音文件下载地址API) and the file server behind it, with fault injection.

``GET /rest/provision/voice/record/v1.0?fileName=…&recordDomain=…`` checks the documented ``Authorization`` and
``X-AKSK`` headers (PasswordDigest = Base64(HMAC-SHA256(APP_Secret, Nonce + Created)), ``Created`` UTC
``YYYY-MM-DDTHH:MM:SSZ``) against the app named in ``Username`` (any of its secrets), and answers 301 with
``Location`` pointing at ``GET /files/{fileName}``, which streams deterministic WAV bytes
(:mod:`voicecall.simulator.wav`) and honours a single ``Range``. Several apps can be served; each file belongs to
one app, and a request signed by another app does not find it.

Answers, with the codes of the API's result-code page: header problems → 400 with the documented 1023xxx code;
unknown app key → 400 ``1010003``; a digest that does not match → 400 ``1023006`` (the generic "鉴权失败" code,
whose handling note names a wrong PasswordDigest or app_key); ``Created`` further than ``max_skew`` from now → 400
``1010013``; missing query parameters → 400 ``1010002``; unknown file, or a file of another app → 404 ``1012007``
(documented for PrivateNumber's identical API; for VoiceCall not confirmed). Faults: the first ``fail_first``
requests for a file → 503 ``1010001``; ``delay`` seconds before every answer; ``download_rate`` bytes/s on file
downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from voicecall import huawei
from voicecall.runtime import metrics
from voicecall.simulator import wav
from voicecall.simulator.calls import FILES_PATH, WAV_HEADER_BYTES

PATH = "/rest/provision/voice/record/v1.0"
FILES = FILES_PATH


@dataclass(frozen=True)
class Rejection:
    status: int
    code: str
    desc: str


def _reject(code: str, desc: str, status: int = 400) -> Rejection:
    return Rejection(status, code, desc)


def parse_created(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def check_auth(authorization: str | None, x_aksk: str | None, apps: Mapping[str, Sequence[str]], now: datetime,
               max_skew: float = 300.0) -> Rejection | None:
    """The platform's AK/SK check of one request against the apps (appKey → secrets); ``None`` when it passes.
    Pure."""
    if not authorization:
        return _reject("1023006", "Authorization not contained in the HTTP header.")
    auth = huawei.parse_x_aksk(authorization)
    if "realm" not in auth:
        return _reject("1023007", "realm not contained in Authorization.")
    if "profile" not in auth:
        return _reject("1023008", "profile not contained in Authorization.")
    if auth["realm"] != "SDP":
        return _reject("1023009", "The value of realm in Authorization must be SDP.")
    if auth["profile"] != "UsernameToken":
        return _reject("1023010", "The value of profile in Authorization must be UsernameToken.")
    if "type" not in auth:
        return _reject("1023012", "type not contained in Authorization.")
    if auth["type"] != "Appkey":
        return _reject("1023011", "The value of type in Authorization must be app_key.")
    if not x_aksk:
        return _reject("1023033", "HTTP header not found X-AKSK field.")
    token = huawei.parse_x_aksk(x_aksk)
    if "UsernameToken" not in token:
        return _reject("1023038", "UsernameToken not contained in X-AKSK.")
    for field, code in (("Username", "1023034"), ("Nonce", "1023035"), ("Created", "1023036"),
                        ("PasswordDigest", "1023037")):
        if not token.get(field):
            return _reject(code, f"{'UserName' if field == 'Username' else field} not contained in X-AKSK.")
    secrets = apps.get(token["Username"])
    if not secrets:
        return _reject("1010003", "Invalid app_key.")
    created = parse_created(token["Created"])
    if created is None or abs((now - created).total_seconds()) > max_skew:
        return _reject("1010013", "Time out limit.")
    # every secret is tried, so the time taken does not tell which one matched
    matches = [_equal(huawei.password_digest(secret, token["Nonce"], token["Created"]), token["PasswordDigest"])
               for secret in secrets]
    if not any(matches):
        return _reject("1023006", "Authentication failed: PasswordDigest does not match.")
    return None


def _equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


def _batched(pieces: Iterator[bytes], at_least: int = 512 * 1024) -> Iterator[bytes]:
    """Fewer, larger writes: one write per 64 KiB block cost more than generating the bytes."""
    batch: list[bytes] = []
    length = 0
    for piece in pieces:
        batch.append(piece)
        length += len(piece)
        if length >= at_least:
            yield b"".join(batch)
            batch, length = [], 0
    if batch:
        yield b"".join(batch)


@dataclass
class FileSpec:
    size: int
    domain: str | None = None  # None: any recordDomain is accepted (url-only recordings)
    fail_first: int | None = None  # None: the server's default
    delay: float | None = None
    app_key: str = ""  # the app it belongs to


def _json(status: int, code: str, desc: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"resultcode": code, "resultdesc": desc}),
                        content_type="application/json", charset="UTF-8", headers=headers)


class RecordingApi:
    """In-process recording API. ``await start()``, use ``base_url``, ``await stop()`` (or ``async with``).

    ``app_key``/``app_secret`` is the first app (files added without an app belong to it); ``apps`` adds more
    (appKey → secret or secrets)."""

    def __init__(self, app_key: str, app_secret: str, host: str = "127.0.0.1", port: int = 0, *,
                 apps: Mapping[str, str | Sequence[str]] | None = None, max_skew: float = 300.0,
                 fail_first: int = 0, delay: float = 0.0, download_rate: float = 0.0,
                 fail_first_download: int = 0) -> None:
        self.app_key = app_key
        self.apps: dict[str, tuple[str, ...]] = {app_key: (app_secret,)}
        for key, value in (apps or {}).items():
            secrets = (value,) if isinstance(value, str) else tuple(value)
            self.apps[key] = tuple(dict.fromkeys((*self.apps.get(key, ()), *secrets)))
        self.host = host
        self.port = port
        self.max_skew = max_skew
        self.fail_first = fail_first
        self.fail_first_download = fail_first_download
        self.delay = delay
        self.download_rate = download_rate
        self.files: dict[str, FileSpec] = {}
        self.attempts: Counter[str] = Counter()  # API requests per file name that passed authentication
        self.download_attempts: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()  # "301", "400 1023006", "404 1012007", "503", "200 file", ...
        self.downloads_completed = 0
        self.fetched: set[str] = set()  # files whose last byte was sent: downloaded whole (maybe in parts)
        self.bytes_sent = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- registry -----------------------------------------------------------------------------------------

    def add_file(self, name: str, size: int, *, domain: str | None = None, fail_first: int | None = None,
                 delay: float | None = None, app_key: str | None = None) -> str:
        """Serve ``name`` (``size`` bytes of WAV) to ``app_key`` (default: the first app); returns its direct
        download URL once started."""
        if size < WAV_HEADER_BYTES:
            raise ValueError(f"a recording needs at least {WAV_HEADER_BYTES} bytes (the WAV header)")
        owner = app_key or self.app_key
        if owner not in self.apps:
            raise ValueError(f"unknown app {owner!r}: give its secret to the RecordingApi first")
        self.files[name] = FileSpec(size, domain, fail_first, delay, owner)
        return self.file_url(name)

    def remove_file(self, name: str) -> None:
        self.files.pop(name, None)

    def file_url(self, name: str) -> str:
        return f"{self.base_url}{FILES}{quote(name)}"

    def sha256(self, name: str) -> str:
        return wav.sha256(name, self.files[name].size)

    # -- server -------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get(PATH, self._record)
        application.router.add_get(FILES + "{name}", self._file, allow_head=False)
        return application

    async def start(self) -> RecordingApi:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await metrics.listen(self._runner, self.host, self.port, ("--serve-recordings", None))
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://{self.host}:{self.port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RecordingApi:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        return {"files": len(self.files), "answers": dict(self.answers), "downloads": self.downloads_completed,
                "bytes": self.bytes_sent}

    # -- handlers -----------------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("fileName", "")
        spec = self.files.get(name)
        delay = spec.delay if spec is not None and spec.delay is not None else self.delay
        if delay > 0:
            await asyncio.sleep(delay)
        x_aksk = request.headers.get("X-AKSK")
        rejection = check_auth(request.headers.get("Authorization"), x_aksk, self.apps, datetime.now(UTC),
                               self.max_skew)
        if rejection is not None:
            self.answers[f"{rejection.status} {rejection.code}"] += 1
            return _json(rejection.status, rejection.code, rejection.desc)
        domain = request.query.get("recordDomain", "")
        if not (1 <= len(name) <= 128) or not (1 <= len(domain) <= 128):
            self.answers["400 1010002"] += 1
            return _json(400, "1010002", "Invalid request: fileName and recordDomain are required (1-128).")
        self.attempts[name] += 1
        if spec is not None and spec.app_key != huawei.parse_x_aksk(x_aksk or "").get("Username"):
            self.answers["404 1012007 other app"] += 1  # signed by another app: its records are not visible
            return _json(404, "1012007", "The record does not exist.")
        if spec is None or (spec.domain is not None and spec.domain != domain):
            self.answers["404 1012007"] += 1
            return _json(404, "1012007", "The record does not exist.")
        fail_first = spec.fail_first if spec.fail_first is not None else self.fail_first
        if self.attempts[name] <= fail_first:
            self.answers["503 1010001"] += 1
            return _json(503, "1010001", "Internal system error.")
        self.answers["301"] += 1
        return web.Response(status=301, headers={"Location": self.file_url(name), "Connection": "close"})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        spec = self.files.get(name)
        if spec is None:
            self.answers["404 file"] += 1
            return _json(404, "1012007", "The record does not exist.")
        self.download_attempts[name] += 1
        if self.download_attempts[name] <= self.fail_first_download:
            self.answers["503 file"] += 1
            return _json(503, "1010001", "Internal system error.")
        try:
            wanted = request.http_range
        except ValueError:
            wanted = slice(None, None)
        start, stop = wanted.start, wanted.stop
        size = spec.size
        if start is not None and start < 0:  # "bytes=-N": the last N bytes
            start, stop = max(size + start, 0), size
        begin = start or 0
        end = size if stop is None else min(stop, size)
        if begin >= size or end <= begin:
            self.answers["416 file"] += 1
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        partial = (begin, end) != (0, size)
        headers = {"Content-Type": "audio/wav", "Content-Length": str(end - begin), "Accept-Ranges": "bytes",
                   "ETag": f'"{name}-{size}"'}
        if partial:
            headers["Content-Range"] = f"bytes {begin}-{end - 1}/{size}"
        response = web.StreamResponse(status=206 if partial else 200, headers=headers)
        await response.prepare(request)
        sent = 0
        started = time.monotonic()
        for piece in _batched(wav.chunks(name, size, begin, end)):
            await response.write(piece)
            sent += len(piece)
            self.bytes_sent += len(piece)
            if self.download_rate > 0:
                ahead = sent / self.download_rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        if end == size:
            self.fetched.add(name)
        self.downloads_completed += 1
        self.answers["206 file" if partial else "200 file"] += 1
        return response
