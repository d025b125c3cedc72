"""The filesystem store: files under a root directory, written in ``.tmp`` and renamed into place."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson

from voicecall.recordings.store.base import (
    SIDECAR,
    TMP_DIR,
    Batcher,
    Stored,
    Writer,
    check_key,
    from_sidecar,
    sidecar,
)
from voicecall.runtime.files import fsync_dir


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
        tmp.write_bytes(sidecar(stored, self._metadata))
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
        path = (self.root / check_key(key)).resolve()
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
        return from_sidecar(key, self.uri(key), meta, size)

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


def file_path(uri: str) -> str:
    """``file:///abs`` and ``file://localhost/abs`` are absolute; ``file://.state/recordings`` (the documented
    default's form) is relative — its "host" is the first path segment, not to be dropped; a plain path as is."""
    if not uri.startswith("file://"):
        return uri
    parsed = urlparse(uri)
    if parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    return unquote(parsed.netloc + parsed.path)
