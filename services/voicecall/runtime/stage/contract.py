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


@dataclass
class Stage:
    """A stage, with full topic names (its command resolves them with ``voicecall.topics.name``)."""

    name: str  # consumer group = runtime.kafka.group_id(settings, name); ce_source = /voicecall/<name>
    input_topic: str
    make_core: Callable[[int], Core]  # input partition number → a fresh core
    deadletter_topic: str  # where a record whose processing raised goes
    changelog_topic: str | None = None  # compacted, as many partitions as the input: the core's state


class StageSettings(config.CommonSettings):
    """Settings of the shell; a stage's settings subclass this (a plain CommonSettings gets these defaults)."""

    batch_records: int = Field(2000, ge=1, le=100_000)  # VOICECALL_BATCH_RECORDS: records per transaction
    batch_time: config.Duration = Field(0.1, le=60)  # VOICECALL_BATCH_TIME: longest wait to fill a batch
    consumer_session_timeout: config.Duration = Field(10.0, ge=1, le=300)  # VOICECALL_CONSUMER_SESSION_TIMEOUT
    transaction_timeout: config.Duration = Field(60.0, ge=1, le=900)  # VOICECALL_TRANSACTION_TIMEOUT
    prepare_timeout: config.Duration = Field(60.0, ge=1)  # VOICECALL_PREPARE_TIMEOUT: producer init + offsets
