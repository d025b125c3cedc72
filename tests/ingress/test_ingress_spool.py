"""The spool on its own: durable appends, reopen, torn and garbled tails, the size bound, an unwritable dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voicecall.ingress.spool import Spool, SpoolError, SpoolFull, iter_entries
from voicecall.runtime.record import Record


def push(i: int, n: int = 2) -> list[Record]:
    return [Record("p.fee.raw", f"s{i}-{j}".encode(), f'{{"sessionId":"s{i}-{j}","n":"ü{i}"}}'.encode(),
                   [("ce_id", f"{i}-{j}".encode()), ("ce_type", b"com.huaweicloud.voicecall.fee")])
            for j in range(n)]


async def read_all(spool: Spool) -> list[list[Record]]:
    out = []
    for segment in list(spool.segments):
        out.extend(entry.records for entry in await spool.read(segment.seq, 0, 10_000))
    return out


async def test_appends_are_readable_after_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, 1 << 12)
    spool.open()
    await asyncio.gather(*(spool.append(push(i)) for i in range(40)))  # group-committed together
    assert spool.pending_entries == 40 and spool.has_backlog
    assert len(spool.segments) >= 1
    await spool.close()

    again = Spool(tmp_path, 1 << 20, 1 << 12)
    again.open()
    assert again.pending_entries == 40
    entries = await read_all(again)
    assert entries == [push(i) for i in range(40)]  # in order, keys/values/headers round-trip (non-ASCII too)
    await again.append(push(99))
    # A reopened spool writes to a new segment, never after what an earlier run left.
    assert again.segments[-1].seq > max(s.seq for s in again.segments[:-1])
    await again.close()


@pytest.mark.parametrize("damage", ["truncate", "garble", "zeros"])
async def test_a_torn_tail_never_loses_earlier_entries(tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path, 1 << 20, 1 << 20)
    spool.open()
    for i in range(10):
        await spool.append(push(i))
    path = spool.segments[-1].path
    await spool.close()
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-7])  # a crash mid-write of the last entry
    elif damage == "garble":
        path.write_bytes(data[:-20] + bytes(b ^ 0x5A for b in data[-20:]))
    else:
        path.write_bytes(data + b"\0" * 100)  # a preallocated, never-written tail

    again = Spool(tmp_path, 1 << 20, 1 << 20)
    again.open()
    expected = 10 if damage == "zeros" else 9
    assert again.pending_entries == expected
    assert again.segments[0].corrupt
    assert await read_all(again) == [push(i) for i in range(expected)]
    await again.append(push(42))
    assert (await read_all(again))[-1] == push(42)
    # The drainer finishing the damaged segment keeps it aside for a human instead of deleting it.
    first = again.segments[0]
    assert await again.finish_segment(first, first.size)
    assert first.path.with_suffix(".corrupt").exists() and not first.path.exists()
    await again.close()


def test_iter_entries_rejects_an_absurd_length() -> None:
    assert list(iter_entries(b"\xff\xff\xff\xff\0\0\0\0" + b"x" * 10, 1)) == [None]


async def test_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 16, 1 << 12)
    spool.open()
    with pytest.raises(SpoolFull):
        for i in range(10_000):
            await spool.append(push(i, 5))
    assert spool.total_bytes <= 1 << 16
    await spool.close()


async def test_finished_segments_are_deleted_and_free_space(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, 1 << 10)
    spool.open()
    for i in range(20):
        await spool.append(push(i))
    before = spool.total_bytes
    first = spool.segments[0]
    assert await spool.finish_segment(first, first.size)
    assert not first.path.exists() and spool.total_bytes < before
    assert spool.total_bytes == sum(s.path.stat().st_size for s in spool.segments)
    await spool.close()


async def test_two_processes_cannot_share_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20, 1 << 20)
    first.open()
    second = Spool(tmp_path, 1 << 20, 1 << 20)
    with pytest.raises(SpoolError, match="in use"):
        second.open()
    await first.close()


async def test_unwritable_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    spool = Spool(tmp_path / "file" / "spool", 1 << 20, 1 << 20)
    with pytest.raises(SpoolError):
        spool.open()
    assert not spool.usable and spool.error
    with pytest.raises(SpoolError):
        await spool.append(push(1))
