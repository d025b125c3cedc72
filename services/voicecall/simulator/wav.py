"""Deterministic recording files: A-Law 8 kHz mono WAV bytes that depend only on the file name and size.

The body is made of 64 KiB blocks, each from ``random.Random(f"{name}:{block}")``, so any byte range can be produced
without the bytes before it (HTTP Range) and a 100 MB file is streamed without being held in memory.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator

from voicecall.simulator.calls import WAV_HEADER_BYTES

BLOCK = 64 * 1024
ALAW = 6  # WAVE_FORMAT_ALAW
RATE = 8000


def header(size: int) -> bytes:
    """RIFF/WAVE header for a file of ``size`` bytes in total: fmt (18 bytes, non-PCM), fact, data."""
    if size < WAV_HEADER_BYTES:
        raise ValueError(f"a WAV file needs at least {WAV_HEADER_BYTES} bytes")
    data = size - WAV_HEADER_BYTES
    fmt = struct.pack("<HHIIHHH", ALAW, 1, RATE, RATE, 1, 8, 0)
    head = (b"RIFF" + struct.pack("<I", size - 8) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<II", 4, data)
            + b"data" + struct.pack("<I", data))
    assert len(head) == WAV_HEADER_BYTES
    return head


def _block(name: str, index: int) -> bytes:
    return random.Random(f"{name}:{index}").randbytes(BLOCK)


def chunks(name: str, size: int, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Bytes ``[start, stop)`` of the file, in pieces of at most 64 KiB."""
    stop = size if stop is None else min(stop, size)
    head = header(size)
    position = start
    while position < stop:
        if position < WAV_HEADER_BYTES:
            piece = head[position:min(stop, WAV_HEADER_BYTES)]
        else:
            offset = position - WAV_HEADER_BYTES
            index, within = divmod(offset, BLOCK)
            piece = _block(name, index)[within:within + (stop - position)]
        yield piece
        position += len(piece)


def content(name: str, size: int) -> bytes:
    """The whole file (small files and tests)."""
    return b"".join(chunks(name, size))


def sha256(name: str, size: int) -> str:
    digest = hashlib.sha256()
    for piece in chunks(name, size):
        digest.update(piece)
    return digest.hexdigest()
