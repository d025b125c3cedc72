"""Both stores: atomic visibility, sidecar-based idempotence, nothing left by an aborted write."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from recordings_helpers import S3Server

from voicecall.recordings.store import FileStore, S3Store, open_store


async def test_file_store_is_atomic_and_idempotent(tmp_path: Path) -> None:
    store = await open_store(tmp_path.as_uri())
    assert isinstance(store, FileStore)
    writer = await store.writer("2026/11/20/s-1.wav", {"sessionId": "s"})
    await writer.write(b"a" * 1000)
    assert not (tmp_path / "2026/11/20/s-1.wav").exists()  # invisible until committed
    assert await store.existing("2026/11/20/s-1.wav") is None
    stored = await writer.commit()
    assert stored.sha256 == hashlib.sha256(b"a" * 1000).hexdigest() and stored.bytes == 1000
    assert await store.existing("2026/11/20/s-1.wav") == stored
    # A file whose size disagrees with its sidecar is not trusted.
    (tmp_path / "2026/11/20/s-1.wav").write_bytes(b"short")
    assert await store.existing("2026/11/20/s-1.wav") is None


async def test_file_store_cleans_temp_files_of_dead_processes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    writer = await store.writer("2026/11/20/t.wav", {})
    await writer.write(b"x")
    stale = store.tmp / store.tmp_path().name.replace(f"-{os.getpid()}-", "-999999999-")
    stale.write_bytes(b"partial")
    FileStore(tmp_path)  # a restarted process cleans up at start
    assert not stale.exists() and len(list(store.tmp.iterdir())) == 1  # the live writer's file stays
    await writer.abort()
    assert list(store.tmp.iterdir()) == []


async def test_s3_store_multipart_is_invisible_until_complete(s3_server: S3Server) -> None:
    prefix = uuid.uuid4().hex
    store = await open_store(f"s3://{s3_server.bucket}/{prefix}", s3_endpoint_url=s3_server.endpoint,
                             s3_part_size=5 * 1024 * 1024)
    assert isinstance(store, S3Store)
    try:
        data = os.urandom(11 * 1024 * 1024 + 5)
        writer = await store.writer("2026/11/20/m.wav", {"sessionId": "m"})
        for i in range(0, len(data), 256 * 1024):
            await writer.write(data[i:i + 256 * 1024])
        listing = await store.client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
        assert listing.get("KeyCount", 0) == 0  # two parts uploaded, nothing visible
        stored = await writer.commit()
        assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.uri.startswith(f"s3://recordings/{prefix}/")
        body = await store.client.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/2026/11/20/m.wav")
        async with body["Body"] as stream:
            assert hashlib.sha256(await stream.read()).hexdigest() == stored.sha256
        assert await store.existing("2026/11/20/m.wav") == stored

        aborted = await store.writer("2026/11/20/n.wav", {})
        await aborted.write(os.urandom(6 * 1024 * 1024))
        await aborted.abort()
        assert await store.existing("2026/11/20/n.wav") is None
        keys = [o["Key"] for o in (await store.client.list_objects_v2(Bucket=s3_server.bucket,
                                                                      Prefix=prefix)).get("Contents", [])]
        assert sorted(keys) == [f"{prefix}/2026/11/20/m.wav", f"{prefix}/2026/11/20/m.wav.json"]
    finally:
        await store.close()


async def test_file_store_uris_absolute_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await open_store("file://.state/recordings")  # the form the README gives as the default
    absolute = await open_store((tmp_path / "abs").as_uri())
    plain = await open_store("plain/dir")
    localhost = await open_store(f"file://localhost{tmp_path / 'lh'}")
    try:
        assert isinstance(relative, FileStore) and relative.root == tmp_path / ".state" / "recordings"
        assert isinstance(absolute, FileStore) and absolute.root == tmp_path / "abs"
        assert isinstance(plain, FileStore) and plain.root == tmp_path / "plain" / "dir"
        assert isinstance(localhost, FileStore) and localhost.root == tmp_path / "lh"
    finally:
        for store in (relative, absolute, plain, localhost):
            await store.close()
