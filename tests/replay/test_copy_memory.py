"""`voicecall replay copy` of a window much larger than its memory: the RSS of the copy process stays bounded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from replay_helpers import Area, fee_headers

from voicecall.runtime import times

RECORDS = 20_000
PAD = 12 * 1024  # ~12 KiB per record: the window is ~235 MiB


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def copy_and_watch(area: Area, since: int, until: int, target: str) -> tuple[int, str]:
    """Run the command, sampling its RSS every 20 ms; returns (peak KiB, stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique", "--to-topic", target,
        "--from", times.iso_ms(since), "--to", times.iso_ms(until), env=area.env(),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    reader = asyncio.ensure_future(proc.communicate())
    while not reader.done():
        try:
            peak = max(peak, rss_kib(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        await asyncio.sleep(0.02)
    out, _ = await asyncio.wait_for(reader, 300)
    assert proc.returncode == 0
    return peak, out.decode()


async def test_copy_memory_stays_bounded(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 1800) * 1000
    pad = "x" * PAD
    started = time.monotonic()
    pending = []
    for n in range(RECORDS):
        sid = f"s{n:06d}"
        value = orjson.dumps({"sessionId": sid, "n": n, "userData": pad})
        pending.append(await producer.send(area.topic("fee.unique"), value, key=sid.encode(),
                                           timestamp_ms=base + n, headers=fee_headers(sid)))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    window_mib = RECORDS * (PAD + 100) / 2**20
    print(f"produced {RECORDS} records ({window_mib:.0f} MiB) in {time.monotonic() - started:.1f} s")

    # Baseline: the same command copying one record (imports, clients, buffers — everything but the window).
    small_peak, small_out = await copy_and_watch(area, base, base + 1, "billing")
    assert "total: copied 1 records" in small_out
    started = time.monotonic()
    big_peak, big_out = await copy_and_watch(area, base, base + RECORDS, "fee.raw")
    print(f"copy of {window_mib:.0f} MiB in {time.monotonic() - started:.1f} s: peak RSS {big_peak / 1024:.0f} MiB "
          f"(one-record copy: {small_peak / 1024:.0f} MiB)")
    assert f"total: copied {RECORDS} records" in big_out
    # Bounded: the whole window is ~235 MiB and one partition ~78 MiB; the copy may only add its fetch buffers and
    # one batch in flight on top of the one-record baseline.
    assert big_peak - small_peak < 48 * 1024, (small_peak, big_peak)
    assert big_peak < window_mib * 1024 / 2
