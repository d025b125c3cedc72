"""Timers: every ``tick_interval`` seconds the shell calls ``tick(now)`` on each ready core that has one.

The timers themselves are the core's (kept in its state, so they are restored with it and move with the partition).
What a tick returns joins the partition's transaction of that round, next to the outputs of the batch in hand, or
makes a transaction of its own: a tick's outputs are committed exactly like everything else, and a transaction that
fails makes the partition start over from its restored state, where the same timers are due again.

A partition is ticked only when it has read its inputs to within one batch of their end: a timer that judges that
something did *not* arrive in time (a CDR within its grace) must not fire while what did arrive is still waiting
in a backlog (a restart after an outage, a replay). So a wall-clock timer fires at its time or, when the stage is
behind, as soon as it has caught up.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from voicecall.runtime.record import Record
from voicecall.runtime.stage.assignment import READY, Partition
from voicecall.runtime.stage.contract import Stage

Work = dict[Partition, tuple[list[Record], dict[TopicPartition, int]]]


class Ticks:
    def __init__(self, stage: Stage, batch_records: int, consumer: Any, log: Any) -> None:
        self.interval = stage.tick_interval
        self.behind = batch_records  # "caught up" = fewer records than one batch left to read
        self.consumer = consumer
        self.log = log
        self.next = time.monotonic() + (self.interval or 0.0)
        self.errors = 0

    def due(self) -> bool:
        if self.interval is None:
            return False
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + self.interval
        return True

    def caught_up(self, part: Partition, positions: dict[TopicPartition, int]) -> bool:
        lag = 0
        for tp in part.inputs:
            end = self.consumer.last_stable_offset(tp)
            if end is None:
                end = self.consumer.highwater(tp)
            position = positions.get(tp, part.offsets.get(tp))
            if end is None or position is None:
                return False  # nothing fetched yet: unknown
            lag += max(0, end - position)
        return lag < self.behind

    def run(self, parts: Iterable[Partition], work: Work) -> None:
        """Add the outputs of every due timer to ``work`` (per partition: outputs, input offsets)."""
        now = time.time()
        for part in parts:
            tick = getattr(part.core, "tick", None)
            if part.state != READY or tick is None:
                continue
            pending = work.get(part)
            if not self.caught_up(part, pending[1] if pending else {}):
                continue
            try:
                produced: list[Record] = tick(now)
            except Exception as error:  # the core's state is unchanged (contract): the next tick tries again
                self.errors += 1
                self.log.warning("tick failed", partition=part.number, error=repr(error))
                continue
            if produced:
                work.setdefault(part, ([], {}))[0].extend(produced)
