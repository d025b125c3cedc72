"""Restoring cores from their changelog partitions, before any input of those partitions is read.

A changelog record the core cannot apply (its ``restore`` raises: wrong size, wrong shape — written by something
other than the stage, e.g. a copy into the internal topic) is skipped: counted, logged with its partition and
offset, and the restore goes on. The alternative, failing the partition until someone removes the record, would
stall the stage's whole partition for a record the stage never wrote (docs/operations.md, runbook
"VoicecallStageRestoreErrors", says why and what to do).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from voicecall.runtime import config, logging as vlog
from voicecall.runtime.kafka import make_consumer
from voicecall.runtime.stage.contract import Core

LOGGED_PER_RESTORE = 10  # bad records logged one by one per restore; the rest are counted in the summary line


class Skipped:
    """The changelog records a restore skipped: each one counted on ``counter`` (a Prometheus counter child, or
    None), the first few logged with where they are; :meth:`summary` logs the total once the restore is done."""

    def __init__(self, counter: Any, log: Any, changelog: str) -> None:
        self.counter = counter
        self.log = log
        self.changelog = changelog
        self.count = 0

    def add(self, record: ConsumerRecord[Any, Any], error: Exception) -> None:
        self.count += 1
        if self.counter is not None:
            self.counter.inc()
        if self.count <= LOGGED_PER_RESTORE:
            key = record.key
            self.log.error("changelog record skipped: the core cannot apply it", topic=self.changelog,
                           partition=record.partition, offset=record.offset,
                           key=None if key is None else bytes(key[:256]).decode(errors="backslashreplace"),
                           key_bytes=None if key is None else len(key),
                           value_bytes=None if record.value is None else len(record.value),
                           headers=[name for name, _ in record.headers or ()][:10],
                           error=f"{_name(type(error))}: {error}"[:300])

    def summary(self) -> None:
        if self.count:
            self.log.error("changelog records skipped during restore", topic=self.changelog, skipped=self.count,
                           logged=min(self.count, LOGGED_PER_RESTORE))


async def restore(settings: config.CommonSettings, changelog: str, cores: Mapping[int, Core], *,
                  timeout: float, skipped: Skipped | None = None) -> int:
    """Apply every committed record of the changelog partitions numbered like ``cores`` to those cores, in offset
    order; returns how many were applied. A record whose ``restore`` raises goes to ``skipped`` (the core must
    leave its state unchanged when it raises; without ``skipped`` it is logged, not counted). Raises
    ``TimeoutError`` after ``timeout`` seconds without progress.

    Call it only after the partitions' producers have fenced the previous owner: the end read here (the last
    stable offset, ``read_committed``) is then final, since nobody but our own, fresh producers writes there."""
    if not cores:
        return 0
    if skipped is None:
        skipped = Skipped(None, vlog.get("processor"), changelog)
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
                applied += _apply(cores[tp.partition], records, skipped)
                progress = time.monotonic()
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if remaining and time.monotonic() - progress > timeout:
                raise TimeoutError(f"changelog restore made no progress for {timeout:.0f} s")
    finally:
        await reader.stop()
    skipped.summary()
    return applied


def _name(kind: type) -> str:
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def _apply(core: Core, records: list[ConsumerRecord[Any, Any]], skipped: Skipped) -> int:
    apply = core.restore
    before = skipped.count
    for record in records:
        try:
            apply(record)
        except Exception as error:
            skipped.add(record, error)
    return len(records) - (skipped.count - before)
