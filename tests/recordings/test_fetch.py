"""The signed record-API call and the streaming download, against a real local HTTP server (no Kafka)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from recordings_helpers import APP_KEY, APP_SECRET, RecordingApi, S3Server

from voicecall.recordings import fetch, safety
from voicecall.recordings.store import FileStore, open_store


def session_with(patterns: list[str]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=safety.SafeResolver(patterns)))


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with session_with(["localhost"]) as session:
        yield session


def creds(api: RecordingApi, secret: str = APP_SECRET) -> fetch.Credentials:
    return fetch.Credentials(api.base_url, APP_KEY, secret)


async def test_record_api_is_signed_and_answers_a_location(recording_api: RecordingApi,
                                                           http: aiohttp.ClientSession) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    recording_api.add(name)
    first = await fetch.download_url(http, creds(recording_api), name, "rec.test")
    second = await fetch.download_url(http, creds(recording_api), name, "rec.test")
    assert first == second == recording_api.file_url(name)
    assert recording_api.api_calls[name] == 2 and recording_api.completed[name] == 0  # redirect not followed


async def test_record_api_errors_are_sorted(recording_api: RecordingApi, http: aiohttp.ClientSession) -> None:
    missing = f"{uuid.uuid4().hex}.wav"
    with pytest.raises(fetch.Permanent) as not_found:
        await fetch.download_url(http, creds(recording_api), missing, "rec.test")
    assert not_found.value.reason == "not-found" and "1012007" in not_found.value.detail
    with pytest.raises(fetch.Permanent) as bad_key:
        await fetch.download_url(http, creds(recording_api, "wrong-secret"), missing, "rec.test")
    assert bad_key.value.reason == "auth"
    flaky = f"{uuid.uuid4().hex}.wav"
    recording_api.add(flaky, fail_first=1)
    with pytest.raises(fetch.Transient):
        await fetch.download_url(http, creds(recording_api), flaky, "rec.test")
    assert await fetch.download_url(http, creds(recording_api), flaky, "rec.test")


def test_secret_not_in_credentials_repr() -> None:
    assert APP_SECRET not in repr(fetch.Credentials("http://x", APP_KEY, APP_SECRET))


async def test_download_streams_into_the_store_with_sha256(recording_api: RecordingApi,
                                                           http: aiohttp.ClientSession, tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    sha = recording_api.add(name, size=3 * 1024 * 1024 + 17)
    store = FileStore(tmp_path)
    writer = await store.writer("2026/01/01/a.wav", {"sessionId": "a"})
    stored = await fetch.download(http, recording_api.file_url(name), writer, patterns=["localhost"],
                                  max_bytes=10 * 1024 * 1024)
    assert (stored.bytes, stored.sha256) == (3 * 1024 * 1024 + 17, sha)
    assert hashlib.sha256((tmp_path / "2026/01/01/a.wav").read_bytes()).hexdigest() == sha
    assert await store.existing("2026/01/01/a.wav") == stored
    assert list((tmp_path / ".tmp").iterdir()) == []


async def test_too_large_is_refused_and_leaves_nothing(recording_api: RecordingApi,
                                                       http: aiohttp.ClientSession, tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    recording_api.add(name, size=300_000)
    store = FileStore(tmp_path)
    writer = await store.writer("2026/01/01/b.wav", {})
    with pytest.raises(fetch.Permanent) as error:
        await fetch.download(http, recording_api.file_url(name), writer, patterns=["localhost"], max_bytes=100_000)
    await writer.abort()
    assert error.value.reason == "too-large"
    assert not (tmp_path / "2026").exists() and list((tmp_path / ".tmp").iterdir()) == []


async def test_redirect_to_another_host_is_not_followed(recording_api: RecordingApi,
                                                        tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    recording_api.add(name)
    # Both hosts are allowed: the redirect alone must be refused.
    async with session_with(["localhost", "127.0.0.1"]) as session:
        writer = await FileStore(tmp_path).writer("2026/01/01/c.wav", {})
        with pytest.raises(fetch.Permanent) as error:
            await fetch.download(session, recording_api.bounce_url(name), writer,
                                 patterns=["localhost", "127.0.0.1"], max_bytes=10**9)
        await writer.abort()
    assert error.value.reason == "forbidden-redirect"
    assert recording_api.started[name] == 0


async def test_a_redirect_on_the_same_origin_is_followed(recording_api: RecordingApi, http: aiohttp.ClientSession,
                                                         tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    sha = recording_api.add(name)
    writer = await FileStore(tmp_path).writer("2026/01/01/h.wav", {})
    stored = await fetch.download(http, recording_api.hop_url(name), writer, patterns=["localhost"], max_bytes=10**9)
    assert stored.sha256 == sha and recording_api.completed[name] == 1


async def test_wildcard_host_resolving_to_loopback_is_refused_by_the_resolver(recording_api: RecordingApi,
                                                                              tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    recording_api.add(name)
    async with session_with(["*"]) as session:
        writer = await FileStore(tmp_path).writer("2026/01/01/d.wav", {})
        with pytest.raises(fetch.Permanent) as error:
            await fetch.download(session, recording_api.file_url(name), writer, patterns=["*"], max_bytes=10**9)
        await writer.abort()
    assert error.value.reason == "forbidden-address" and "loopback" in error.value.detail
    assert recording_api.started[name] == 0


async def test_metadata_address_is_refused_before_any_connection(tmp_path: Path) -> None:
    async with session_with(["*"]) as session:
        writer = await FileStore(tmp_path).writer("2026/01/01/e.wav", {})
        with pytest.raises(fetch.Permanent) as error:
            await fetch.download(session, "http://169.254.169.254/latest/meta-data/", writer, patterns=["*"],
                                 max_bytes=10**9)
        await writer.abort()
    assert error.value.reason == "forbidden-host" and "metadata" in error.value.detail


async def test_connection_refused_is_transient(tmp_path: Path) -> None:
    from voicecall.devenv.ports import free_port

    async with session_with(["localhost"]) as session:
        writer = await FileStore(tmp_path).writer("2026/01/01/f.wav", {})
        with pytest.raises(fetch.Transient):
            await fetch.download(session, f"http://localhost:{free_port()}/x.wav", writer, patterns=["localhost"],
                                 max_bytes=10**9)
        await writer.abort()


async def test_every_record_api_call_has_a_fresh_nonce_and_a_utc_created(
        recording_api: RecordingApi, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from datetime import UTC, datetime

    # A host clock in UTC+8: the official sample's local-time Created would be 8 hours off here.
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        name = f"{uuid.uuid4().hex}.wav"
        recording_api.add(name)
        for _ in range(3):
            await fetch.download_url(http, creds(recording_api), name, "rec.test")
    finally:
        monkeypatch.undo()
        time.tzset()
    signed = [s for s in recording_api.signatures if s["fileName"] == name]
    assert len(signed) == 3 and len({s["Nonce"] for s in signed}) == 3
    assert all(s["Username"] == APP_KEY and s["Nonce"].isalnum() and 1 <= len(s["Nonce"]) <= 128 for s in signed)
    for s in signed:
        created = datetime.strptime(s["Created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - created).total_seconds()) < 60, s["Created"]
    assert recording_api.completed[name] == 0


async def test_a_stalled_transfer_times_out_as_transient(recording_api: RecordingApi, tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    recording_api.add(name, size=300_000, chunk_delay=2.0)
    timeout = aiohttp.ClientTimeout(sock_read=0.3)
    connector = aiohttp.TCPConnector(resolver=safety.SafeResolver(["localhost"]))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        writer = await FileStore(tmp_path).writer("2026/01/01/g.wav", {})
        with pytest.raises(fetch.Transient) as error:
            await fetch.download(session, recording_api.file_url(name), writer, patterns=["localhost"],
                                 max_bytes=10**9)
        await writer.abort()
    assert "Timeout" in error.value.detail and recording_api.completed[name] == 0
    assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize(("status", "body", "kind", "reason"), [
    (404, b'{"resultcode":"1012007","resultdesc":"The record does not exist."}', fetch.Permanent, "not-found"),
    (400, b'{"resultcode":"1023006","resultdesc":"Authentication failed"}', fetch.Permanent, "auth"),
    (400, b'{"resultcode":"1010003","resultdesc":"Invalid app_key."}', fetch.Permanent, "auth"),
    (400, b'{"resultcode":"1023037","resultdesc":"PasswordDigest not contained"}', fetch.Permanent, "auth"),
    (400, b'{"resultcode":"1010013","resultdesc":"Time out limit."}', fetch.Transient, "server"),
    (500, b'{"resultcode":"1010001","resultdesc":"Internal system error."}', fetch.Transient, "server"),
    (400, b'{"resultcode":"1023001","resultdesc":"Internal error."}', fetch.Transient, "server"),
    (503, b"<html>busy</html>", fetch.Transient, "server"),
    (429, b"", fetch.Transient, "server"),
    (404, b"", fetch.Permanent, "not-found"),
    (403, b"", fetch.Permanent, "rejected"),
    (200, b"RIFF....", fetch.Permanent, "unexpected-response"),  # redirects followed by something: no Location
])
def test_record_api_answers_are_classified(status: int, body: bytes, kind: type[fetch.FetchError],
                                           reason: str) -> None:
    error = fetch.classify_api_error(status, body)
    assert type(error) is kind and error.reason == reason


async def traced_download(http: aiohttp.ClientSession, url: str, writer: Any) -> tuple[Any, int]:
    """The download and the peak of memory traced while it ran."""
    import tracemalloc

    tracemalloc.start()
    try:
        stored = await fetch.download(http, url, writer, patterns=["localhost"], max_bytes=10**9)
        return stored, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_large_download_is_streamed_not_held_in_memory(recording_api: RecordingApi,
                                                               http: aiohttp.ClientSession, tmp_path: Path) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    size = 48 * 1024 * 1024
    sha = recording_api.add(name, size=size)
    store = FileStore(tmp_path)
    writer = await store.writer("2026/01/01/big.wav", {})
    stored, peak = await traced_download(http, recording_api.file_url(name), writer)
    assert (stored.bytes, stored.sha256) == (size, sha)
    assert peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while streaming a {size / 2**20:.0f} MiB file"


async def test_a_large_download_to_s3_holds_about_one_part(recording_api: RecordingApi, http: aiohttp.ClientSession,
                                                           s3_server: S3Server) -> None:
    name = f"{uuid.uuid4().hex}.wav"
    size = 32 * 1024 * 1024
    sha = recording_api.add(name, size=size)
    store = await open_store(f"s3://{s3_server.bucket}/{uuid.uuid4().hex}", s3_endpoint_url=s3_server.endpoint,
                             s3_part_size=5 * 1024 * 1024)
    try:
        writer = await store.writer("2026/01/01/big.wav", {})
        stored, peak = await traced_download(http, recording_api.file_url(name), writer)
        assert (stored.bytes, stored.sha256) == (size, sha) and await store.existing("2026/01/01/big.wav") == stored
        # One 5 MiB part as chunks, joined once for sending (≈ 12 MiB measured, the same for 32 and 64 MiB files),
        # never the whole file.
        assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB streaming {size / 2**20:.0f} MiB"
    finally:
        await store.close()
