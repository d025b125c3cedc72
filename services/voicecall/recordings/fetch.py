"""The record API call (signed, redirects off, ``Location`` of the 301) and the streaming download.

Errors are sorted into :class:`Transient` (retry later with a fresh download URL) and :class:`Permanent` (report
on ``recording.failed``). The download never follows a redirect to another origin, re-checks every URL against
the allowlist, and stops at the size limit; the file goes chunk by chunk into a store writer, hashed on the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson
from yarl import URL

from voicecall import huawei
from voicecall.apps import AppRegistry
from voicecall.recordings import safety
from voicecall.recordings.store import Stored, Writer

RECORD_PATH = "/rest/provision/voice/record/v1.0"
CHUNK = 256 * 1024
MAX_SAME_ORIGIN_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Transient(FetchError):
    """Worth another attempt: timeouts, connection errors, 5xx, 429."""


class Permanent(FetchError):
    """Never going to work: not found, bad credentials, forbidden host or address, too large."""


@dataclass(frozen=True)
class Credentials:
    base_url: str
    app_key: str
    app_secret: str  # plain text only here, in memory; never logged (repr hides it)

    def __repr__(self) -> str:
        return f"Credentials(base_url={self.base_url!r}, app_key={self.app_key!r}, app_secret='***')"


class Signers:
    """The credentials of each app for the record API: the CDR's ``appKey`` picks the app; without one, or when
    only the single app is configured (no apps file), the single app signs."""

    def __init__(self, base_url: str, apps: AppRegistry) -> None:
        self.base_url = base_url
        self.apps = apps

    def credentials(self, app_key: str | None) -> list[Credentials]:
        """The app's credentials, one per secret (the first first); :class:`Permanent` ``unknown-app`` when no app
        can sign for ``app_key``."""
        apps = self.apps.current()
        single = self.apps.single
        if app_key is not None and app_key in apps:
            key = app_key
        elif single is not None and (app_key is None or not self.apps.has_file):
            key = single[0]
        elif app_key is None:
            raise Permanent("unknown-app", "the CDR has no appKey and VOICECALL_HUAWEI_APP_KEY is not set")
        else:
            raise Permanent("unknown-app", f"appKey {app_key!r} is in neither VOICECALL_HUAWEI_APPS_FILE nor "
                                           "VOICECALL_HUAWEI_APP_KEY")
        return [Credentials(self.base_url, key, secret) for secret in apps[key]]


def classify_api_error(status: int, body: bytes) -> FetchError:
    """A non-301 answer of the record API → the error to raise (the result codes of rtc_05_0011)."""
    code, desc = "", ""
    try:
        parsed = orjson.loads(body) if body else None
        if isinstance(parsed, dict):
            code, desc = str(parsed.get("resultcode", "")), str(parsed.get("resultdesc", ""))
    except orjson.JSONDecodeError:
        pass
    detail = f"HTTP {status} {code} {desc}".strip()
    if code == "1012007":
        return Permanent("not-found", detail)
    # 1010001 / 1023001 = internal errors; 1010013 = clock skew on Created: a fresh signature may pass.
    if status >= 500 or status in (408, 429) or code in ("1010001", "1023001", "1010013"):
        return Transient("server", detail)
    if code.startswith(("1023", "1010")):
        return Permanent("auth", detail)  # AK/SK and request errors: retrying will not fix them
    if status == 404:
        return Permanent("not-found", detail)
    if 400 <= status < 500:
        return Permanent("rejected", detail)
    return Permanent("unexpected-response", detail)


async def signed_download_url(session: aiohttp.ClientSession, creds: list[Credentials], file_name: str,
                              domain: str) -> str:
    """:func:`download_url` signed with the app's first secret, and with its second when the platform refuses the
    first (a rotation: whichever the platform holds now verifies)."""
    for index, one in enumerate(creds):
        try:
            return await download_url(session, one, file_name, domain)
        except Permanent as error:
            if error.reason != "auth" or index == len(creds) - 1:
                raise
    raise Permanent("unknown-app", "the app has no secret")


async def download_url(session: aiohttp.ClientSession, creds: Credentials, file_name: str, domain: str) -> str:
    """Ask the record API for a fresh download URL (fresh Nonce and Created on every call)."""
    url = URL(creds.base_url.rstrip("/") + RECORD_PATH).with_query(fileName=file_name, recordDomain=domain)
    headers = {"Content-Type": "application/json;charset=UTF-8",
               **huawei.auth_headers(creds.app_key, creds.app_secret)}
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            body = await response.content.read(64 * 1024)
            if response.status in REDIRECTS:
                location = response.headers.get("Location", "").strip()
                if not location:
                    raise Permanent("unexpected-response", f"HTTP {response.status} without Location")
                return str(url.join(URL(location)))
            raise classify_api_error(response.status, body)
    except FetchError:
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise Transient("connection", f"record API: {type(error).__name__}: {error}") from None


async def download(session: aiohttp.ClientSession, url: str, writer: Writer, *, patterns: Sequence[str],
                   max_bytes: int) -> Stored:
    """Stream ``url`` into ``writer`` and commit it. The caller aborts the writer on any exception."""
    current = URL(url)
    for _ in range(MAX_SAME_ORIGIN_REDIRECTS + 1):
        refusal = safety.url_refusal(current, patterns)
        if refusal:
            raise Permanent("forbidden-host", refusal)
        try:
            async with session.get(current, allow_redirects=False) as response:
                if response.status in REDIRECTS:
                    target = current.join(URL(response.headers.get("Location", "")))
                    if not safety.same_origin(current, target):
                        raise Permanent("forbidden-redirect", f"{current.host} redirects to {target.host}")
                    current = target
                    continue
                if response.status != 200:
                    raise _download_error(response.status)
                if response.content_length is not None and response.content_length > max_bytes:
                    raise Permanent("too-large", f"{response.content_length} bytes > {max_bytes}")
                size = 0
                async for chunk in response.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise Permanent("too-large", f"more than {max_bytes} bytes")
                    await writer.write(chunk)
                if response.content_length is not None and size != response.content_length:
                    raise Transient("truncated", f"{size} of {response.content_length} bytes")
            return await writer.commit()
        except FetchError:
            raise
        except aiohttp.ClientConnectorDNSError as error:
            if isinstance(error.os_error, safety.ForbiddenAddress):
                raise Permanent("forbidden-address", error.os_error.reason) from None
            raise Transient("connection", f"{type(error).__name__}: {error}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Transient("connection", f"{type(error).__name__}: {error}") from None
    raise Permanent("forbidden-redirect", "too many redirects")


def _download_error(status: int) -> FetchError:
    if status >= 500 or status in (408, 429):
        return Transient("server", f"HTTP {status}")
    if status in (404, 410):
        return Permanent("not-found", f"HTTP {status}")
    return Permanent("rejected", f"HTTP {status}")
