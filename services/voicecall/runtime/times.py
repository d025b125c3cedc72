"""Every time the pipeline writes: ISO 8601 / RFC 3339 in UTC with ``Z``.

With milliseconds for moments the pipeline observes (receive time, Kafka timestamps, ``ce_time`` of its own
events); whole seconds for Huawei's times, which have no fractions. Parsing Huawei's ``yyyy-MM-dd HH:mm:ss`` is
:func:`voicecall.huawei.parse_time`'s job.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds (a Kafka timestamp) → ``2019-01-24T03:05:16.402Z``."""
    second, milli = divmod(int(epoch_ms), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{milli:03d}Z"


def now_iso() -> str:
    """Now, as :func:`iso_ms` writes it."""
    return iso_ms(time.time_ns() // 1_000_000)


def iso_z(moment: datetime) -> str:
    """An aware datetime → ``2019-01-24T03:05:16Z`` (second resolution; fractions are dropped)."""
    if moment.tzinfo is not UTC or moment.microsecond:  # Huawei times are UTC and whole: billing's hot path skips this
        moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment.isoformat()[:-6] + "Z"  # isoformat pads years below 1000 (strftime does not, on glibc)


class Clock:
    """:func:`now_iso` for a hot path: the part up to the second is formatted once per second (strftime costs µs)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        second, milli = divmod(time.time_ns() // 1_000_000, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}Z"
