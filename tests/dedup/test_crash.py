"""Crash test: ``voicecall dedup`` as a subprocess, SIGKILLed at random moments while 10,000 CDRs (~30 %
duplicates) arrive; ``fee.unique`` read with read_committed must hold exactly the unique set."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import orjson
from dedup_helpers import DedupSettings, cdr, env_for, fee_record

from kafka_helpers import produce, read_all

KILLS = 6


async def start_dedup(settings: DedupSettings, log: Path) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:  # noqa: ASYNC230 - a local log file, opened once per start
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicecall", "dedup", env=env_for(settings), stdout=out, stderr=out,
            stdin=asyncio.subprocess.DEVNULL)


async def wait_for_line(log: Path, text: str, count: int, timeout: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (content := log.read_text()).count(text) < count:  # noqa: ASYNC240 - a small local log file
        assert loop.time() < deadline, f"no {text} in time: {content[-2000:]}"
        await asyncio.sleep(0.05)


async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(settings: DedupSettings,
                                                                      tmp_path: Path) -> None:
    seed = int(os.environ.get("DEDUP_CRASH_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"crash test seed {seed} (DEDUP_CRASH_SEED={seed} repeats the feed and the kill moments)")
    rng = random.Random(seed)
    docs = [cdr(20_000 + i) for i in range(7000)]
    feed = [*docs, *rng.choices(docs, k=3000)]
    rng.shuffle(feed)
    log = tmp_path / "dedup.log"

    async def feeder() -> None:
        for i in range(0, len(feed), 250):
            await produce(settings, "fee.raw", [fee_record(d) for d in feed[i:i + 250]])
            await asyncio.sleep(rng.uniform(0.6, 1.4))

    feeding = asyncio.create_task(feeder())
    process = await start_dedup(settings, log)
    kills = readies = 0
    try:
        while kills < KILLS:
            if kills % 3 == 2:
                await asyncio.sleep(rng.uniform(0.5, 4.0))  # while it starts, joins or restores
            else:  # while it processes: mid-batch, mid-transaction or between transactions
                await wait_for_line(log, '"partitions ready"', count=readies + 1)
                await asyncio.sleep(rng.uniform(0.05, 2.0))
            readies = log.read_text().count('"partitions ready"')
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
            process = await start_dedup(settings, log)
        await feeding
        unique = await read_all(settings, "fee.unique", expect=7000, idle=3.0, timeout=120)
    finally:
        feeding.cancel()
        if process.returncode is None:
            process.terminate()
            code = await asyncio.wait_for(process.wait(), 60)
    assert kills >= 5
    assert code == 0, log.read_text()[-3000:]  # the last one stops cleanly on SIGTERM
    ids = [orjson.loads(r.value)["sessionId"] for r in unique]
    missing = {d["sessionId"] for d in docs} - set(ids)
    assert not missing, f"{len(missing)} missing (seed {seed})"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicated (seed {seed})"
    assert len(ids) == 7000
    assert await read_all(settings, "deadletter", idle=0.2) == []
