"""The same `voicecall replay copy` into fee.raw, twice, with `voicecall dedup` running: no duplicate in fee.unique."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError
from replay_helpers import Area, fee_headers, read_all

from contracts.validate import validate_records
from voicecall.replay import names
from voicecall.replay.copy import REPLAY_ID
from voicecall.runtime import times
from voicecall.runtime.kafka import group_id, make_admin, make_consumer

CALLS = 10


def fee(n: int, end: datetime) -> bytes:
    stamp = end.strftime("%Y-%m-%d %H:%M:%S")
    return orjson.dumps({"direction": 0, "spId": "sp", "appKey": "ak", "bindNum": "+8675500000028",
                         "sessionId": f"call-{n:02d}", "callerNum": "+8675500000028",
                         "calleeNum": f"+861380000{n:04d}", "callOutStartTime": stamp, "callOutAnswerTime": stamp,
                         "callEndTime": stamp, "serviceType": "001", "recordFlag": 0})


async def dedup_caught_up(area: Area, timeout: float = 60) -> None:
    """Wait until the dedup group's committed offsets reach the end of fee.raw."""
    topic = area.topic("fee.raw")
    tps = [TopicPartition(topic, p) for p in (await names.partitions(area.settings))[topic]]
    consumer = make_consumer(area.settings, group_id=None)
    admin = make_admin(area.settings)
    await consumer.start()
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            ends = await consumer.end_offsets(tps)
            try:
                done = await admin.list_consumer_group_offsets(group_id(area.settings, "dedup"), partitions=tps)
            except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                done = {}  # a fresh broker creates __consumer_offsets on the first group's demand
            if all(tp in done and done[tp].offset >= ends[tp] for tp in tps):
                return
            assert time.monotonic() < deadline, (ends, done)
            await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
        await admin.close()


async def replay(area: Area, since: int, until: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.raw", "--to-topic", "fee.raw",
        "--from", times.iso_ms(since), "--to", times.iso_ms(until), env=area.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_replaying_a_window_twice_leaves_no_duplicate_after_dedup(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 600) * 1000
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for n in range(CALLS):
        await producer.send_and_wait(area.topic("fee.raw"), fee(n, end), key=f"call-{n:02d}".encode(),
                                     timestamp_ms=base + n * 1000, headers=fee_headers(f"call-{n:02d}"))
    env = area.env() | {"VOICECALL_METRICS_HOST": "127.0.0.1", "VOICECALL_METRICS_PORT": "0",
                        "VOICECALL_BATCH_TIME": "50ms"}
    dedup = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "dedup", env=env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await dedup_caught_up(area)
        first = await read_all(area, "fee.unique", expected=CALLS)
        assert len(first) == CALLS

        for _ in range(2):
            out = await replay(area, base, base + CALLS * 1000)
            assert f"total: copied {CALLS} records" in out
            await dedup_caught_up(area)

        raw = await read_all(area, "fee.raw", expected=3 * CALLS)
        assert len(raw) == 3 * CALLS  # the originals and two replays of them
        # The copies still fit fee.raw's contract (the replay headers are part of it) and say which run made them.
        assert validate_records(raw, prefix=area.prefix) == 3 * CALLS
        runs = {dict(r.headers).get(REPLAY_ID) for r in raw}
        assert len(runs) == 3 and None in runs
        unique = await read_all(area, "fee.unique", expected=CALLS)
        assert sorted(r.key for r in unique) == sorted(r.key for r in first)  # nothing new got through
        assert [(r.key, r.value) for r in unique] == [(r.key, r.value) for r in first]
        # Dropped as exact duplicates, not parked as conflicting ones: the copies are the originals' bytes.
        assert await read_all(area, "deadletter") == []
    finally:
        dedup.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(dedup.communicate(), 60)
    assert dedup.returncode == 0, err.decode()[-2000:]
