"""Crash test: ``voicecall dedup`` as a subprocess, SIGKILLed at random moments while 10,000 CDRs (~30 %
duplicates) arrive; ``fee.unique`` read with read_committed must hold exactly the unique set."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import orjson
from dedup_helpers import DedupSettings, cdr, env_for, fee_record

from kafka_helpers import produce, read_all
from process_helpers import Crashing

KILLS = 6


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
    dedup = Crashing("dedup", env_for(settings), log)
    await dedup.start()
    try:
        await dedup.kill_at_random_moments(KILLS, rng, starting=(0.5, 4.0), processing=(0.05, 2.0))
        await feeding
        unique = await read_all(settings, "fee.unique", expect=7000, idle=3.0, timeout=120)
    finally:
        feeding.cancel()
        code = await dedup.stop()
    assert dedup.kills == KILLS
    assert code == 0, log.read_text()[-3000:]  # the last one stops cleanly on SIGTERM
    ids = [orjson.loads(r.value)["sessionId"] for r in unique]
    missing = {d["sessionId"] for d in docs} - set(ids)
    assert not missing, f"{len(missing)} missing (seed {seed})"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicated (seed {seed})"
    assert len(ids) == 7000
    assert await read_all(settings, "deadletter", idle=0.2) == []
