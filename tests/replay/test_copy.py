"""`voicecall replay copy`: exact window boundaries, order per partition, keys, headers and the replay id."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import subprocess
import sys
import time
from typing import Any

from replay_helpers import Area, fee_headers, fee_value, read_all

from voicecall.replay import copy as replay_copy, window
from voicecall.runtime import cloudevents, times


def test_core_selection_and_headers() -> None:
    win = window.Window(1000, 2000)
    assert replay_copy.selected(1000, b"a", win, None)
    assert not replay_copy.selected(2000, b"a", win, None)
    assert not replay_copy.selected(1500, b"a", win, b"b")
    headers = replay_copy.replay_headers([("ce_id", b"x"), (replay_copy.REPLAY_ID, b"old")], "new", "t/0/5")
    assert headers == [("ce_id", b"x"), (replay_copy.REPLAY_ID, b"new"), (replay_copy.REPLAY_ORIGIN, b"t/0/5")]
    assert replay_copy.target_partition(2, 3, 3) == 2
    assert replay_copy.target_partition(2, 3, 12) is None


async def test_copy_window_is_exact_to_the_record(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 3600) * 1000
    t1, t2 = base + 10_000, base + 20_000
    # 30 records one second apart, spread over the 3 partitions; the window holds numbers 10..19.
    for n in range(30):
        sid = f"s{n:02d}"
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                     partition=n % 3, timestamp_ms=base + n * 1000, headers=fee_headers(sid))
    # Out-of-order timestamps inside partition 0's scanned range: a late-stamped record (after the window, within
    # the grace) followed by one that belongs to the window, and one stamped before the window.
    await producer.send_and_wait(area.topic("fee.unique"), fee_value("late", 98), key=b"late", partition=0,
                                 timestamp_ms=t2 + 5_000, headers=fee_headers("late"))
    await producer.send_and_wait(area.topic("fee.unique"), fee_value("inwin", 99), key=b"inwin", partition=0,
                                 timestamp_ms=t2 - 1, headers=fee_headers("inwin"))
    await producer.send_and_wait(area.topic("fee.unique"), fee_value("early", 97), key=b"early", partition=0,
                                 timestamp_ms=t1 - 1, headers=fee_headers("early"))

    summary = await replay_copy.copy(area.settings, "fee.unique", "fee.raw", window.Window(t1, t2),
                                     replay_id="r1", batch=4)
    assert summary.copied == 11 and not summary.interrupted

    source = {r.key: r for r in await read_all(area, "fee.unique")}
    copies = await read_all(area, "fee.raw", expected=11)
    assert sorted(r.key for r in copies) == sorted([f"s{n:02d}".encode() for n in range(10, 20)] + [b"inwin"])
    for copy in copies:
        original = source[copy.key]
        assert copy.value == original.value
        assert copy.partition == original.partition
        assert cloudevents.header(copy.headers, "ce_id") == cloudevents.header(original.headers, "ce_id")
        assert cloudevents.header(copy.headers, replay_copy.REPLAY_ID) == "r1"
        assert cloudevents.header(copy.headers, replay_copy.REPLAY_ORIGIN) == (
            f"{original.topic}/{original.partition}/{original.offset}")
        assert list(copy.headers)[:len(original.headers)] == list(original.headers)
    # Order within each partition is the original order.
    for partition in range(3):
        copied_origin = [source[r.key].offset for r in copies if r.partition == partition]
        assert copied_origin == sorted(copied_origin)


async def test_copy_one_key_through_the_command(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 600) * 1000
    for n in range(6):
        sid = "keep" if n % 2 else f"other{n}"
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                     timestamp_ms=base + n, headers=fee_headers(sid, ce_id=f"id{n}"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique",
        "--to-topic", area.topic("fee.raw"), "--from", times.iso_ms(base), "--to", "now", "--key", "keep",
        env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "total: copied 3 records, skipped 3" in out.decode()
    assert "%" in err.decode()  # the progress bar
    copies = await read_all(area, "fee.raw", expected=3)
    assert [cloudevents.header(r.headers, "ce_id") for r in copies] == ["id1", "id3", "id5"]


async def test_copy_rejects_unknown_topic(area: Area) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "nope", "--to-topic", "fee.raw",
        "--from=-1h", env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "no topic 'nope'" in err.decode()


async def test_copy_dry_run_counts_and_produces_nothing(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 300) * 1000
    for n in range(4):
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(f"d{n}", n), key=f"d{n}".encode(),
                                     timestamp_ms=base + n, headers=fee_headers(f"d{n}"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique", "--to-topic", "fee.raw",
        "--from=-1h", "--dry-run", env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "total: would copy 4 records" in out.decode()
    assert await read_all(area, "fee.raw") == []


def test_progress_writes_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = replay_copy.Progress(200, stream)
    progress.advance(50, force=True)
    progress.advance(150)  # throttled: not a terminal, less than 10 s later
    progress.finish()
    assert stream.getvalue().splitlines() == [f"[{'#' * 7:<30}]  25.0% 50/200 offsets",
                                              f"[{'#' * 30}] 100.0% 200/200 offsets"]


async def test_copy_stops_cleanly_on_sigterm_and_says_so(area: Area, producer: Any) -> None:
    """SIGTERM mid-copy: the batch in flight is acknowledged, the summary counts exactly what reached the target,
    says INTERRUPTED, and the command exits 0."""
    base = (int(time.time()) - 900) * 1000
    total = 4000
    pending = []
    for n in range(total):
        sid = f"s{n:05d}"
        pending.append(await producer.send(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                           partition=0, timestamp_ms=base + n, headers=fee_headers(sid)))
    await asyncio.gather(*pending)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique", "--to-topic", "fee.raw",
        "--from", times.iso_ms(base), "--to", times.iso_ms(base + total), "--batch", "1", env=area.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not await read_all(area, "fee.raw", idle=0.1):
            assert time.monotonic() < deadline and proc.returncode is None, "the copy never started"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = out.decode()
    assert "INTERRUPTED, run again to finish" in summary, summary
    copied = int(re.search(r"total: copied (\d+) records", summary).group(1))  # type: ignore[union-attr]
    assert 0 < copied < total
    assert len(await read_all(area, "fee.raw", expected=copied)) == copied
