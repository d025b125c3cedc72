"""Where recordings go: one small interface, a filesystem store and an S3-compatible store.

A recording becomes visible under its key only once complete (rename / single put / completed multipart upload).
Next to it a small sidecar ``<key>.json`` records ``bytes`` and ``sha256``; it is written after the recording, so
its presence means "this key holds a complete file with this hash" and lets a re-delivered record skip the
download (the hash cannot be known before fetching).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import orjson

from voicecall.runtime.files import fsync_dir

TMP_DIR = ".tmp"
SIDECAR = ".json"


@dataclass(frozen=True)
class Stored:
    key: str
    uri: str
    bytes: int
    sha256: str


class Writer(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> Stored:
        """Make the object visible under its key, then write the sidecar."""

    async def abort(self) -> None: ...


class Store(Protocol):
    def uri(self, key: str) -> str: ...

    async def existing(self, key: str) -> Stored | None:
        """The complete object already stored under ``key`` (per its sidecar and its real size), or None."""

    async def writer(self, key: str, metadata: dict[str, str]) -> Writer: ...

    async def close(self) -> None: ...


def _sidecar(stored: Stored, metadata: dict[str, str]) -> bytes:
    return orjson.dumps({"bytes": stored.bytes, "sha256": stored.sha256, **metadata})


def _check_key(key: str) -> str:
    # Keys come from keys.object_key; refuse anything that could still climb out of the store.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ValueError(f"unsafe object key {key!r}")
    return key


class Batcher:
    """Collects chunks and hands them, ~512 KiB at a time, to ``consume`` on a worker thread.

    sha256 is the largest CPU cost of a download (≈ 0.6 s per GiB); hashlib and file writes release the GIL, so
    doing them off the event loop lets another core work while the loop keeps reading sockets. The chunks are
    passed as a list: nothing is copied."""

    SIZE = 512 * 1024

    def __init__(self, consume: Callable[[list[bytes]], None], executor: Executor) -> None:
        self._consume = consume
        self._executor = executor
        self._chunks: list[bytes] = []
        self._size = 0
        self._running: asyncio.Future[None] | None = None

    async def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size >= self.SIZE:
            await self.drain()

    async def drain(self) -> None:
        chunks, self._chunks, self._size = self._chunks, [], 0
        if chunks:
            self._running = asyncio.get_running_loop().run_in_executor(self._executor, self._consume, chunks)
            await asyncio.shield(self._running)  # a cancelled caller must not orphan the thread: see settle()
            self._running = None

    async def settle(self) -> None:
        """Wait for a batch still on its thread (after a cancellation), so the file can be closed safely."""
        if self._running is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._running)


# --- filesystem -----------------------------------------------------------------------------------------------


class FileWriter:
    def __init__(self, store: FileStore, key: str, metadata: dict[str, str]) -> None:
        self._store, self._key, self._metadata = store, key, metadata
        self._tmp = store.tmp_path()
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self._size = 0
        self._batcher = Batcher(self._consume, store.executor)
        self._committing: asyncio.Future[Stored] | None = None

    def _consume(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)
            self._file.write(chunk)

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        await self._batcher.add(chunk)

    def _finish(self) -> Stored:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.path(self._key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        stored = Stored(self._key, self._store.uri(self._key), self._size, self._hash.hexdigest())
        # The sidecar needs no fsync of its own: existing() trusts it only when it parses and the file beside it
        # has its size, so a sidecar lost or torn by a crash just means one more download. One directory fsync
        # then makes both renames durable before recording.stored is produced.
        tmp = self._store.tmp_path()
        tmp.write_bytes(_sidecar(stored, self._metadata))
        os.replace(tmp, final.with_name(final.name + SIDECAR))
        fsync_dir(final.parent)
        return stored

    async def commit(self) -> Stored:
        await self._batcher.drain()
        self._committing = asyncio.get_running_loop().run_in_executor(self._store.executor, self._finish)
        return await asyncio.shield(self._committing)

    async def abort(self) -> None:
        await self._batcher.settle()
        if self._committing is not None:
            # Cancelled while _finish runs on its thread: let it end before closing the file under it (the file
            # then ends up wholly under its key, or not at all).
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._committing)
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class FileStore:
    """Files under ``root``; unfinished downloads live in ``root/.tmp`` (same filesystem, so rename is atomic)."""

    def __init__(self, root: Path, threads: int = 20) -> None:
        # Hashing, writes and fsyncs of every transfer in flight: the default pool (cores + 4) would queue them.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="filestore")
        self.root = root.resolve()
        self.tmp = self.root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._tag = f"{socket.gethostname()}-{os.getpid()}"
        self.clean_stale()

    def path(self, key: str) -> Path:
        path = (self.root / _check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self.tmp):
            raise ValueError(f"object key {key!r} leaves the store")
        return path

    def tmp_path(self) -> Path:
        # Recreated when missing: an operator clearing the store must not turn every download into a retry loop.
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{self._tag}-{uuid.uuid4().hex}.part"

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def clean_stale(self, max_age: float = 86400.0) -> int:
        """Drop temp files of dead processes of this host (a killed download) and any older than ``max_age``."""
        host = socket.gethostname()
        removed = 0
        for entry in self.tmp.iterdir():
            name_host, _, rest = entry.name.rpartition("-")[0].rpartition("-")
            pid = rest if rest.isdigit() else ""
            dead = name_host == host and pid and not _alive(int(pid))
            with contextlib.suppress(FileNotFoundError):
                if dead or time.time() - entry.stat().st_mtime > max_age:
                    entry.unlink()
                    removed += 1
        return removed

    async def existing(self, key: str) -> Stored | None:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._existing, key)

    def _existing(self, key: str) -> Stored | None:
        path = self.path(key)
        try:
            meta = orjson.loads(path.with_name(path.name + SIDECAR).read_bytes())
            size = path.stat().st_size
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("bytes") != size or not isinstance(meta.get("sha256"), str):
            return None
        return Stored(key, self.uri(key), size, meta["sha256"])

    async def writer(self, key: str, metadata: dict[str, str]) -> Writer:
        self.path(key)  # validate before any byte is fetched
        return FileWriter(self, key, metadata)

    async def close(self) -> None:
        self.executor.shutdown(wait=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- S3 -------------------------------------------------------------------------------------------------------


class S3Writer:
    """Buffers one part at a time: a single PUT when the file fits in one part, else a multipart upload that is
    invisible until completed (an aborted or crashed upload leaves nothing under the key)."""

    def __init__(self, store: S3Store, key: str, metadata: dict[str, str]) -> None:
        self._store, self._key, self._metadata = store, key, metadata
        self._object = store.object_name(key)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._batcher = Batcher(self._consume, store.executor)

    def _consume(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        await self._batcher.add(chunk)
        if self._pending_size >= self._store.part_size:
            await self._upload_part()

    async def _upload_part(self) -> None:
        client = self._store.client
        if self._upload_id is None:
            created = await client.create_multipart_upload(Bucket=self._store.bucket, Key=self._object,
                                                           ContentType="audio/wav")
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        # The chunks are joined once here: a growing bytearray copies on every reallocation, a higher peak of
        # memory per transfer (bench/RESULTS.md, Recordings).
        body, self._pending, self._pending_size = b"".join(self._pending), [], 0
        response = await client.upload_part(Bucket=self._store.bucket, Key=self._object, PartNumber=number,
                                            UploadId=self._upload_id, Body=body)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def commit(self) -> Stored:
        await self._batcher.drain()
        client, bucket = self._store.client, self._store.bucket
        stored = Stored(self._key, self._store.uri(self._key), self._size, self._hash.hexdigest())
        if self._upload_id is None:
            await client.put_object(Bucket=bucket, Key=self._object, Body=b"".join(self._pending),
                                    ContentType="audio/wav")
        else:
            if self._pending:
                await self._upload_part()
            await client.complete_multipart_upload(Bucket=bucket, Key=self._object, UploadId=self._upload_id,
                                                   MultipartUpload={"Parts": self._parts})
        self._pending, self._pending_size = [], 0
        await client.put_object(Bucket=bucket, Key=self._object + SIDECAR, Body=_sidecar(stored, self._metadata),
                                ContentType="application/json")
        return stored

    async def abort(self) -> None:
        await self._batcher.settle()
        self._pending, self._pending_size = [], 0
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                await self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._object,
                                                                UploadId=self._upload_id)


class S3Store:
    """``s3://bucket/prefix`` via aiobotocore; credentials from the usual AWS variables / profile chain."""

    def __init__(self, bucket: str, prefix: str, client: Any, exit_stack: contextlib.AsyncExitStack,
                 part_size: int, threads: int = 20) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3store")
        self.part_size = part_size
        self._exit_stack = exit_stack

    @classmethod
    async def open(cls, uri: str, endpoint_url: str | None, region: str, part_size: int, threads: int = 20
                   ) -> S3Store:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        parsed = urlparse(uri)
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"})))
        return cls(parsed.netloc, unquote(parsed.path), client, stack, part_size, threads)

    def object_name(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_name(key)}"

    async def existing(self, key: str) -> Stored | None:
        from botocore.exceptions import ClientError

        name = self.object_name(key)
        try:
            sidecar = await self.client.get_object(Bucket=self.bucket, Key=name + SIDECAR)
            async with sidecar["Body"] as body:
                meta = orjson.loads(await body.read())
            head = await self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        except orjson.JSONDecodeError:
            return None
        size = int(head["ContentLength"])
        if not isinstance(meta, dict) or meta.get("bytes") != size or not isinstance(meta.get("sha256"), str):
            return None
        return Stored(key, self.uri(key), size, meta["sha256"])

    async def writer(self, key: str, metadata: dict[str, str]) -> Writer:
        self.object_name(key)
        return S3Writer(self, key, metadata)

    async def close(self) -> None:
        await self._exit_stack.aclose()
        self.executor.shutdown(wait=False)


async def open_store(uri: str, *, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1",
                     s3_part_size: int = 5 * 1024 * 1024, threads: int = 20) -> Store:
    """``file:///path``, a plain path, or ``s3://bucket/prefix``; ``threads`` ≈ transfers in flight + a few."""
    if uri.startswith("s3://"):
        return await S3Store.open(uri, s3_endpoint_url, s3_region, s3_part_size, threads)
    return FileStore(Path(file_path(uri)), threads)


def file_path(uri: str) -> str:
    """``file:///abs`` and ``file://localhost/abs`` are absolute; ``file://.state/recordings`` (the documented
    default's form) is relative — its "host" is the first path segment, not to be dropped; a plain path as is."""
    if not uri.startswith("file://"):
        return uri
    parsed = urlparse(uri)
    if parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    return unquote(parsed.netloc + parsed.path)
