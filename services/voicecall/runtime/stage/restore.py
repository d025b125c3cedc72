"""Restoring cores from their changelog partitions, before any input of those partitions is read."""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiokafka import TopicPartition

from voicecall.runtime import config
from voicecall.runtime.kafka import make_consumer
from voicecall.runtime.stage.contract import Core


async def restore(settings: config.CommonSettings, changelog: str, cores: Mapping[int, Core], *,
                  timeout: float) -> int:
    """Apply every committed record of the changelog partitions numbered like ``cores`` to those cores, in offset
    order; returns how many were applied. Raises ``TimeoutError`` after ``timeout`` seconds without progress.

    Call it only after the partitions' producers have fenced the previous owner: the end read here (the last
    stable offset, ``read_committed``) is then final, since nobody but our own, fresh producers writes there."""
    if not cores:
        return 0
    reader = make_consumer(settings, group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    applied = 0
    try:
        tps = [TopicPartition(changelog, partition) for partition in cores]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        remaining = {tp for tp in tps if await reader.position(tp) < ends[tp]}
        progress = time.monotonic()
        while remaining:
            batch = await reader.getmany(*remaining, timeout_ms=500, max_records=100_000)
            for tp, records in batch.items():
                apply = cores[tp.partition].restore
                for record in records:
                    apply(record)
                applied += len(records)
                progress = time.monotonic()
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if remaining and time.monotonic() - progress > timeout:
                raise TimeoutError(f"changelog restore made no progress for {timeout:.0f} s")
    finally:
        await reader.stop()
    return applied
