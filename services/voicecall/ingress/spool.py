"""The durable local spool: where a push goes when Kafka does not acknowledge it in time.

Layout: ``<dir>/<20-digit sequence>.seg`` segment files, appended to only. Each entry is
``u32 length | u32 crc32(payload) | payload`` with payload = JSON ``{"t": unix time, "r": [records]}``.
Appends are group-committed: every push waiting while one ``write + fsync`` runs shares the next one, so a
slow disk costs latency, not throughput. An entry is acknowledged to its caller only after that fsync.

A crash can only tear the tail of the segment being written: reading stops at the first entry whose length or
CRC does not match, and a reopened spool never appends after a torn tail (it starts a new segment), so earlier
entries are never damaged. An entry whose length and CRC match but whose payload cannot be read (written by
something else) is handed to the drainer as unreadable, to be quarantined, and reading goes on behind it. A segment
is deleted only once the drainer has every record in it acknowledged by Kafka or quarantined
(:mod:`voicecall.ingress.quarantine`). ``<dir>/LOCK`` (flock) keeps two processes from sharing one spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from voicecall.ingress.quarantine import Quarantine
from voicecall.runtime.files import fsync_dir, write_all
from voicecall.runtime.record import Record

HEADER = struct.Struct(">II")
MAX_ENTRY = 64 << 20  # a push is ≤ a few MiB; a larger length field is a torn or garbled header
SUFFIX = ".seg"


def segment_name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


class SpoolError(Exception):
    """The spool cannot take the entry (full, unwritable, closed)."""


class SpoolFull(SpoolError):
    pass


@dataclass
class Segment:
    seq: int
    path: Path
    size: int  # bytes durably written (fsync'd) and readable
    file_bytes: int = 0  # what the file takes on disk, torn tail included
    first_time: float | None = None
    corrupt: bool = False  # reading stopped early at a bad entry


@dataclass(slots=True)
class Entry:
    seq: int
    offset: int
    end: int
    time: float
    records: list[Record]
    unreadable: bytes | None = None  # the payload of a well-framed entry that cannot be read (records then [])


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_entry(records: list[Record], now: float) -> bytes:
    return frame(orjson.dumps({"t": now, "r": [
        [r.topic, None if r.key is None else r.key.decode("utf-8", "surrogateescape"),
         None if r.value is None else r.value.decode(),
         [[name, value.decode("utf-8", "surrogateescape")] for name, value in r.headers]]
        for r in records]}))


def _decode_records(payload: bytes) -> tuple[float, list[Record]]:
    doc = orjson.loads(payload)
    records = [Record(topic, None if key is None else key.encode("utf-8", "surrogateescape"),
                      None if value is None else value.encode(),
                      [(name, hv.encode("utf-8", "surrogateescape")) for name, hv in headers])
               for topic, key, value, headers in doc["r"]]
    if not all(r.topic.__class__ is str and r.topic and all(n.__class__ is str for n, _ in r.headers)
               for r in records):
        raise TypeError("a record's topic or a header name is not a string")
    return float(doc["t"]), records


def iter_entries(data: bytes, seq: int, start: int = 0) -> Iterator[Entry | None]:
    """Entries of a segment's bytes from ``start``; yields ``None`` once at a torn or garbled entry and stops."""
    offset = start
    while offset < len(data):
        if offset + HEADER.size > len(data):
            yield None
            return
        length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length == 0 or length > MAX_ENTRY or end > len(data):  # 0: a zero-filled, never-written tail
            yield None
            return
        payload = data[offset + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            yield None
            return
        try:
            when, records = _decode_records(payload)
        except (ValueError, KeyError, TypeError, UnicodeError, AttributeError):
            yield Entry(seq, offset, end, 0.0, [], unreadable=payload)
        else:
            yield Entry(seq, offset, end, when, records)
        offset = end


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.total_bytes = 0
        self.pending_entries = 0  # appended and not yet drained
        self.error: str | None = None  # why the spool is unusable, if it is
        self.attachments: dict[tuple[int, int], Any] = {}
        self.quarantine = Quarantine(directory / "quarantine")
        self.backlog = asyncio.Event()
        self._active: tuple[Segment, int] | None = None  # segment and its fd
        self._queue: list[tuple[bytes, asyncio.Future[tuple[int, int]], Any]] = []
        self._wake = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._reserved = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory and index what a previous run left (it is drained first)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolError(f"spool {self.directory} is in use by another process") from None
            for path in sorted(self.directory.glob(f"*{SUFFIX}")):
                seq = int(path.stem)
                data = path.read_bytes()
                segment = Segment(seq, path, 0)
                count = 0
                for entry in iter_entries(data, seq):
                    if entry is None:
                        segment.corrupt = True
                        break
                    if segment.first_time is None and entry.unreadable is None:
                        segment.first_time = entry.time
                    segment.size = entry.end
                    count += 1
                segment.file_bytes = len(data)
                self.segments.append(segment)
                self.total_bytes += len(data)
                self.pending_entries += count
            if self.quarantine.path.exists():
                kept = iter_entries(self.quarantine.path.read_bytes(), 0)
                self.quarantine.records = sum(1 for entry in kept if entry is not None)
        except OSError as error:
            self.error = f"spool unusable: {error}"
            raise SpoolError(self.error) from error
        if self.pending_entries:
            self.backlog.set()
        self._writer = asyncio.create_task(self._write_loop(), name="spool-writer")

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._active is not None:
            os.close(self._active[1])
            self._active = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._writer is not None and not self._writer.done() and not self._closed

    @property
    def has_backlog(self) -> bool:
        return self.pending_entries > 0 or bool(self._queue)

    def oldest_age(self) -> float:
        times = [s.first_time for s in self.segments if s.first_time is not None]
        return max(0.0, time.time() - min(times)) if times and self.pending_entries else 0.0

    def state(self) -> dict[str, object]:
        return {"usable": self.usable, "error": self.error, "bytes": self.total_bytes,
                "segments": len(self.segments), "entries": self.pending_entries,
                "oldest_age_seconds": round(self.oldest_age(), 3), "quarantined": self.quarantine.count()}

    # -- appending -------------------------------------------------------------------------------------------

    async def append(self, records: list[Record], attachment: Any = None) -> tuple[int, int]:
        """Write one push durably; returns its (segment, offset). Raises :class:`SpoolError`."""
        if not self.usable:
            raise SpoolError(self.error or "spool closed")
        try:
            entry = encode_entry(records, time.time())
        except (UnicodeError, orjson.JSONEncodeError) as error:  # never from the parser's records
            raise SpoolError(f"records cannot be written to the spool: {error}") from error
        if self.total_bytes + self._reserved + len(entry) > self.max_bytes:
            raise SpoolFull(f"spool full ({self.total_bytes} of {self.max_bytes} bytes)")
        self._reserved += len(entry)
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, future, attachment))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                if self._closed:
                    return
                continue
            batch, self._queue = self._queue, []
            try:
                async with self._io_lock:
                    locations = await asyncio.to_thread(self._write_batch, [entry for entry, _, _ in batch])
            except OSError as error:
                # Keep the spool usable (the next batch starts a fresh segment) but tell every waiter now.
                self.error = f"spool write failed: {error}"
                self._drop_active()
                for entry, future, _ in batch:
                    self._reserved -= len(entry)
                    if not future.done():
                        future.set_exception(SpoolError(self.error))
                continue
            now = time.time()
            for (entry, future, attachment), location in zip(batch, locations, strict=True):
                self._reserved -= len(entry)
                self.total_bytes += len(entry)
                self.pending_entries += 1
                if attachment is not None:
                    self.attachments[location] = attachment
                if not future.done():
                    future.set_result(location)
            self.error = None
            segment = self._active[0] if self._active else None
            if segment is not None and segment.first_time is None:
                segment.first_time = now
            self.backlog.set()

    def _drop_active(self) -> None:
        if self._active is not None:
            with contextlib.suppress(OSError):
                os.close(self._active[1])
            self._active = None

    def _open_segment(self) -> tuple[Segment, int]:
        seq = (self.segments[-1].seq + 1) if self.segments else 1
        path = self.directory / segment_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        fsync_dir(self.directory)
        segment = Segment(seq, path, 0)
        self.segments.append(segment)
        return segment, fd

    def _write_batch(self, entries: list[bytes]) -> list[tuple[int, int]]:
        """(thread) Append and fsync; a reopened or sealed segment is never appended to."""
        if self._active is None or self._active[0].size >= self.segment_bytes:
            if self._active is not None:
                os.close(self._active[1])
            self._active = self._open_segment()
        segment, fd = self._active
        data = b"".join(entries)
        segment.file_bytes += len(data)  # counted before writing: a failed write may still leave bytes
        write_all(fd, data)
        locations = []
        offset = segment.size
        for entry in entries:
            locations.append((segment.seq, offset))
            offset += len(entry)
        segment.size = offset
        return locations

    # -- draining --------------------------------------------------------------------------------------------

    async def read(self, seq: int, offset: int, limit: int) -> list[Entry]:
        """Up to ``limit`` durable entries of segment ``seq`` from ``offset``."""
        segment = next((s for s in self.segments if s.seq == seq), None)
        if segment is None or offset >= segment.size:
            return []
        size = segment.size
        data = await asyncio.to_thread(_read_range, segment.path, offset, size)
        entries: list[Entry] = []
        for entry in iter_entries(data, seq):
            if entry is None:
                break
            entries.append(Entry(seq, entry.offset + offset, entry.end + offset, entry.time, entry.records,
                                 entry.unreadable))
            if len(entries) >= limit:
                break
        return entries

    def first_segment(self) -> Segment | None:
        return self.segments[0] if self.segments else None

    def drained(self, count: int) -> None:
        self.pending_entries = max(0, self.pending_entries - count)
        if not self.has_backlog:
            self.backlog.clear()

    async def finish_segment(self, segment: Segment, drained_to: int) -> bool:
        """Every record of ``segment`` up to ``drained_to`` is in Kafka: delete it, unless more arrived meanwhile."""
        async with self._io_lock:
            if segment.size > drained_to:
                return False
            if self._active is not None and self._active[0] is segment:
                self._drop_active()
            if segment.corrupt:
                # Keep what could not be read for a human; it no longer counts against the bound.
                await asyncio.to_thread(segment.path.rename, segment.path.with_suffix(".corrupt"))
            else:
                await asyncio.to_thread(segment.path.unlink)
            self.segments.remove(segment)
            self.total_bytes = max(0, self.total_bytes - segment.file_bytes)
            return True

    def is_active(self, segment: Segment) -> bool:
        return self._active is not None and self._active[0] is segment


def _read_range(path: Path, offset: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(end - offset)
