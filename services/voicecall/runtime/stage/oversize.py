"""Outputs too large to produce.

The producer refuses a record over its ``max_request_size``, which fails the batch's transaction; the partition is
then prepared again and the same input makes the same output, for ever. So after a transaction failed that way,
the partition's next batches are checked record by record until an oversized output is found: it is replaced by a
deadletter record (reason ``too-large``) for the input that made it, and the stage moves on. Nothing is checked
in the normal case (no cost on the hot path).
"""

from __future__ import annotations

from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from voicecall.runtime import deadletter
from voicecall.runtime.kafka import MAX_REQUEST_SIZE
from voicecall.runtime.record import Record

LIMIT = MAX_REQUEST_SIZE  # the stages' producers' max_request_size (runtime.kafka)


def caused(error: BaseException) -> bool:
    """Whether a failed transaction failed on a record too large to send."""
    return isinstance(error, MessageSizeTooLargeError) or isinstance(error.__cause__, MessageSizeTooLargeError)


def size(out: Record) -> int:
    """The size the producer checks against its limit (the same estimate aiokafka's ``send`` makes)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(out.key, out.value, out.headers))


def fit(record: Any, outputs: list[Record], stage: str, deadletter_topic: str, max_payload: int,
        limit: int = LIMIT) -> tuple[list[Record], int]:
    """``outputs`` of the input ``record`` with each one over ``limit`` replaced by a ``too-large`` deadletter
    record; returns them and how many were replaced."""
    fitted: list[Record] = []
    replaced = 0
    for out in outputs:
        bytes_ = size(out)
        if bytes_ <= limit:
            fitted.append(out)
            continue
        replaced += 1
        dead = deadletter.for_record(
            record, deadletter.Reason.TOO_LARGE, stage, deadletter_topic,
            detail=f"the output for {out.topic} is {bytes_} bytes, over the producer's limit of {limit}",
            max_bytes=min(max_payload, limit // 4))
        fitted.append(dead)  # always fits: the deadletter builder bounds key, payload and envelope
    return fitted, replaced
