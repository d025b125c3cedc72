"""What a stage supplies to the shell (see the package docstring for the rules a core must keep)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka.structs import ConsumerRecord
from pydantic import Field

from voicecall.runtime import config
from voicecall.runtime.record import Record


class Core(Protocol):
    """Pure per-partition logic: record in → records out, no I/O."""

    def process(self, record: ConsumerRecord) -> list[Record]: ...

    # One changelog record (value None = tombstone); raises, state unchanged, on one it cannot decode (skipped).
    def restore(self, record: ConsumerRecord) -> None: ...


class Ticking(Protocol):
    """A core with timers: its timers live in its state (restored like the rest of it), and :meth:`tick` fires the
    due ones. Same rules as ``process``: no I/O, and no state change when it raises."""

    def tick(self, now: float) -> list[Record]: ...  # now = wall clock, seconds since the epoch


@dataclass
class Stage:
    """A stage, with full topic names (its command resolves them with ``voicecall.topics.name``)."""

    name: str  # consumer group = runtime.kafka.group_id(settings, name); ce_source = /voicecall/<name>
    input_topic: str
    make_core: Callable[[int], Core]  # input partition number → a fresh core
    deadletter_topic: str  # where a record whose processing raised goes
    changelog_topic: str | None = None  # compacted, as many partitions as the input: the core's state
    # More input topics, co-partitioned with ``input_topic`` (same partition count, same keys): partition n of
    # every input belongs to the one core, producer and transaction of partition number n.
    more_inputs: tuple[str, ...] = ()
    tick_interval: float | None = None  # seconds between ``Ticking.tick`` calls; None = the core has no timers

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input_topic, *self.more_inputs)


class StageSettings(config.CommonSettings):
    """Settings of the shell; a stage's settings subclass this (a plain CommonSettings gets these defaults)."""

    batch_records: int = Field(2000, ge=1, le=100_000, description="most records per transaction")
    batch_time: config.Duration = Field(0.1, le=60, description="longest wait to fill a batch")
    # 6 s is the brokers' least (group.min.session.timeout.ms); a heartbeat a second keeps it far from a busy
    # event loop's pauses.
    consumer_session_timeout: config.Duration = Field(6.0, ge=1, le=300, description="the group's session timeout: "
                                                      "how soon a vanished instance's partitions move on")
    consumer_instance_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="static group membership: a restarted instance of this id gets its partitions back without a "
                    "rebalance; unique per instance (e.g. a StatefulSet pod's name); unset: dynamic membership")
    transaction_timeout: config.Duration = Field(60.0, ge=1, le=900, description="the broker aborts a transaction "
                                                                                 "left open this long")
    prepare_timeout: config.Duration = Field(60.0, ge=1, description="longest wait to take over a partition "
                                                                     "(producer init, offsets, state restore)")
