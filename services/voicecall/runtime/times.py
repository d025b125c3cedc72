"""Every time the pipeline writes: ISO 8601 / RFC 3339 in UTC with ``Z``.

With milliseconds for moments the pipeline observes (receive time, Kafka timestamps, ``ce_time`` of its own
events); whole seconds for Huawei's times, which have no fractions. Parsing Huawei's ``yyyy-MM-dd HH:mm:ss`` is
:func:`voicecall.huawei.parse_time`'s job.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

# RFC 3339 date-time as the pipeline reads it in headers: four-digit year, optional fraction, Z or an offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII)


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds (a Kafka timestamp) → ``2019-01-24T03:05:16.402Z``."""
    second, milli = divmod(int(epoch_ms), 1000)
    t = time.gmtime(second)  # strftime's %Y does not pad years below 1000 on glibc
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            f".{milli:03d}Z")


def is_rfc3339(value: str) -> bool:
    """Whether ``value`` is an RFC 3339 date-time that exists (``2019-02-30T…`` does not)."""
    if len(value) > 40 or not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


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


_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """Seconds since the epoch of a UTC wall time, with its fields checked (``calendar.timegm`` takes
    31 February as 3 March); raises ValueError for a time that does not exist."""
    if not (1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month] and hour < 24 and minute < 60 and second < 60):
        raise ValueError("not a time")
    if month == 2 and day == 29 and (year % 4 or (year % 100 == 0 and year % 400)):
        raise ValueError("not a leap year")
    # days from civil (H. Hinnant): proleptic Gregorian day number relative to 1970-01-01
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second
