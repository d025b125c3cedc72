"""What both stores share: the interface (:class:`Store`, :class:`Writer`, :class:`Stored`), the sidecar, the key
check, and the :class:`Batcher` that hashes (and writes) chunks off the event loop.

A recording becomes visible under its key only once complete (rename / single put / completed multipart upload).
Next to it a small sidecar ``<key>.json`` records ``bytes`` and ``sha256``; it is written after the recording, so
its presence means "this key holds a complete file with this hash" and lets a re-delivered record skip the
download (the hash cannot be known before fetching).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import orjson

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


def sidecar(stored: Stored, metadata: dict[str, str]) -> bytes:
    return orjson.dumps({"bytes": stored.bytes, "sha256": stored.sha256, **metadata})


def from_sidecar(key: str, uri: str, meta: object, size: int) -> Stored | None:
    """The object under ``key`` as its sidecar describes it, if the sidecar is whole and the object has its size."""
    if not isinstance(meta, dict) or meta.get("bytes") != size or not isinstance(meta.get("sha256"), str):
        return None
    return Stored(key, uri, size, meta["sha256"])


def check_key(key: str) -> str:
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
