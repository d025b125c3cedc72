"""``voicecall replay copy``: re-publish the records of a time window from one topic to another.

Window: exactly the records whose Kafka timestamp ``t`` has ``from <= t < to``. Each partition is read from the
first offset at/after ``from`` (no earlier offset can hold a record of the window) up to the first record stamped
at/after ``to + grace``, or the end of the partition as it was when the copy started (so a copy into its own source
ends); every record read is checked against the window. The grace (default 60 s) covers producers whose clocks or
send times disagree, which leaves timestamps slightly out of order within a partition.

The stop is decided on the records read, not by ``offsets_for_times(to + grace)``: on a transactional topic
(fee.unique, billing) that lookup also sees the transaction markers, which carry the time they were written, so it
can answer the offset of a marker written long after the records before it — ahead of records of the window
(after a backlog, or with records stamped in the past). Reading is ``read_committed``: records of aborted
transactions are never copied, and the copy ends at the last stable offset (an open transaction's records are not
copied).

Partitions are copied one after the other, in offset order, in batches whose
acknowledgements are awaited before the next batch is read: memory stays bounded by the fetch size and one batch,
whatever the size of the window.

Each copy keeps the key, the value and every header (so ``ce_id`` and the bytes are the original's: the
deduplicator recognises a replayed fee record and drops it) and adds ``voicecall-replay-id`` (one id per run) and
``voicecall-replay-origin`` (``topic/partition/offset`` of the original). The copy gets a new Kafka timestamp.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiokafka import TopicPartition

from voicecall.replay import names, window
from voicecall.runtime import times, tracing
from voicecall.runtime.cloudevents import REPLAY_ID  # the stages' age metric and spans tell replayed records by it
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import make_consumer, make_producer

REPLAY_ORIGIN = "voicecall-replay-origin"
_OURS = (REPLAY_ID, REPLAY_ORIGIN)

Headers = list[tuple[str, bytes]]


def selected(timestamp_ms: int, key: bytes | None, win: window.Window, only_key: bytes | None) -> bool:
    return win.contains(timestamp_ms) and (only_key is None or key == only_key)


def replay_headers(original: Sequence[tuple[str, bytes]], replay_id: str, origin: str) -> Headers:
    """The original headers, with any earlier replay's markers replaced by this replay's."""
    kept = [(k, v) for k, v in original if k not in _OURS]
    return [*kept, (REPLAY_ID, replay_id.encode()), (REPLAY_ORIGIN, origin.encode())]


def target_partition(partition: int, source_count: int, target_count: int) -> int | None:
    """Same partition when the layouts match (order and co-location kept exactly); else hash the key."""
    return partition if source_count == target_count else None


@dataclass
class PartitionResult:
    partition: int
    first: int  # first offset read
    stop: int  # first offset not read
    copied: int = 0
    skipped: int = 0


@dataclass
class Summary:
    replay_id: str
    source: str
    target: str
    win: window.Window
    partitions: list[PartitionResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    dry_run: bool = False

    @property
    def copied(self) -> int:
        return sum(p.copied for p in self.partitions)

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.partitions)

    def render(self) -> str:
        end = "open" if self.win.end is None else times.iso_ms(self.win.end)
        verb = "would copy" if self.dry_run else "copied"
        lines = [f"replay {self.replay_id}: {self.source} → {self.target}, "
                 f"window [{times.iso_ms(self.win.start)}, {end})"]
        for p in self.partitions:
            if p.stop <= p.first:  # its first record is already past the window: nothing read
                continue
            lines.append(f"  partition {p.partition}: {verb} {p.copied}, skipped {p.skipped} "
                         f"(offsets {p.first}..{p.stop - 1})")
        lines.append(f"total: {verb} {self.copied} records, skipped {self.skipped} (outside the window or "
                     f"another key), {self.seconds:.1f} s" + (" — INTERRUPTED, run again to finish"
                                                              if self.interrupted else ""))
        return "\n".join(lines)


class Progress:
    """A one-line progress bar on stderr (rewritten in place on a terminal, a line every 10 s otherwise)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def advance(self, count: int, force: bool = False) -> None:
        self.done += count
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        share = min(1.0, self.done / self.total)
        bar = "#" * int(share * 30)
        text = f"[{bar:<30}] {share:6.1%} {self.done}/{self.total} offsets"
        self.stream.write(("\r" + text) if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self.advance(0, force=True)
        if self.tty:
            self.stream.write("\n")


async def copy(settings: CommonSettings, source: str, target: str, win: window.Window, *,
               only_key: str | None = None, replay_id: str | None = None, dry_run: bool = False,
               batch: int = 1000, grace_ms: int = 60_000, stop: asyncio.Event | None = None,
               from_internal: bool = False, err: TextIO = sys.stderr) -> Summary:
    names.check_copy(source, target, settings.topic_prefix, from_internal=from_internal)
    replay_id = replay_id or uuid.uuid4().hex
    tracing.setup("replay")
    stop = stop or asyncio.Event()
    key = only_key.encode() if only_key is not None else None
    consumer = make_consumer(settings, group_id=None, client_id=f"{settings.kafka_client_id}-replay",
                             # Small fetches: the copy's memory is these buffers plus one batch.
                             max_partition_fetch_bytes=1024 * 1024, fetch_max_bytes=4 * 1024 * 1024)
    producer = None if dry_run else make_producer(settings, client_suffix="-replay")  # a dry run sends nothing
    started = time.monotonic()
    try:
        await consumer.start()  # an unreachable broker: BrokerUnreachable, one line (exit 2)
        if producer is not None:
            await producer.start()
        existing = await names.partitions(settings)
        source = names.resolve(source, settings.topic_prefix, existing)
        target = names.resolve(target, settings.topic_prefix, existing)
        summary = Summary(replay_id, source, target, win, dry_run=dry_run)
        source_parts = existing[source]
        target_count = len(existing[target])
        tps = [TopicPartition(source, p) for p in source_parts]
        ranges = await _ranges(consumer, tps, win, grace_ms)
        progress = Progress(sum(estimate - first for first, estimate, _ in ranges.values()), err)
        for tp in tps:
            first, estimate, end = ranges[tp]
            if first >= end:
                continue
            result = PartitionResult(tp.partition, first, end)
            summary.partitions.append(result)
            partition = target_partition(tp.partition, len(source_parts), target_count)
            await _copy_partition(consumer, producer, tp, result, target, partition, win, key, replay_id,
                                  dry_run, batch, stop, progress, estimate, grace_ms)
            if stop.is_set():
                summary.interrupted = True
                break
        progress.finish()
        summary.seconds = time.monotonic() - started
        return summary
    finally:  # also after a failed start: a client made and not stopped is reported as unclosed
        await consumer.stop()
        if producer is not None:
            await producer.stop()


async def _ranges(consumer: Any, tps: list[TopicPartition], win: window.Window, grace_ms: int
                  ) -> dict[TopicPartition, tuple[int, int, int]]:
    """``(first, estimate, end)`` offsets per partition, fixed before anything is copied.

    ``first``: the first offset at/after the window's start; ``end``: the partition's end (last stable offset) now,
    which is never read past; ``estimate``: where the first record at/after ``to + grace`` probably is — only for
    the progress bar, since a transaction marker may answer the time lookup (see the module docstring).
    """
    ends = await consumer.end_offsets(tps)
    starts = await consumer.offsets_for_times({tp: win.start for tp in tps})
    stops = (await consumer.offsets_for_times({tp: win.end + grace_ms for tp in tps})
             if win.end is not None else {})
    result = {}
    for tp in tps:
        end = ends[tp]
        first = min(starts[tp].offset, end) if starts.get(tp) else end
        estimate = min(stops[tp].offset, end) if stops.get(tp) else end
        result[tp] = (first, max(first, estimate), end)
    return result


async def _copy_partition(consumer: Any, producer: Any, tp: TopicPartition, result: PartitionResult, target: str,
                          partition: int | None, win: window.Window, key: bytes | None, replay_id: str,
                          dry_run: bool, batch: int, stop: asyncio.Event, progress: Progress, estimate: int,
                          grace_ms: int) -> None:
    """Copy ``[result.first, result.stop)`` or less: reading ends at the first record stamped at/after
    ``to + grace``, whose offset becomes ``result.stop``."""
    consumer.assign([tp])
    consumer.seek(tp, result.first)
    limit = None if win.end is None else win.end + grace_ms
    end = result.stop
    position = result.first
    reported = 0  # offsets counted on the progress bar so far, at most estimate - first
    budget = estimate - result.first
    finished = False
    while position < end and not finished and not stop.is_set():
        fetched = await consumer.getmany(tp, timeout_ms=500, max_records=batch)
        acks = []
        for record in fetched.get(tp, ()):
            if record.offset >= end:
                finished = True
                break
            if limit is not None and record.timestamp >= limit:
                result.stop = record.offset
                finished = True
                break
            if not selected(record.timestamp, record.key, win, key):
                result.skipped += 1
                continue
            result.copied += 1
            if not dry_run:
                headers = replay_headers(record.headers or (), replay_id, f"{tp.topic}/{tp.partition}/"
                                                                            f"{record.offset}")
                if tracing.ACTIVE:  # a span in the record's own trace, marked as a replay
                    span = tracing.replay_span(record, target, replay_id)
                    headers = tracing.stamped(headers, span)
                    span.end()
                acks.append(await producer.send(target, value=record.value, key=record.key, headers=headers,
                                                partition=partition))
        if acks:
            # Waiting for this batch's acknowledgements before reading on keeps at most one batch in flight.
            await asyncio.gather(*acks)
        position = result.stop if finished else await consumer.position(tp)
        done = min(position - result.first, budget)
        progress.advance(max(0, done - reported))
        reported = max(reported, done)
    if finished or position >= end:
        progress.advance(budget - reported)  # what the estimate expected beyond the real stop
