"""Times given on the command line (``--from``, ``--to``, ``--since``) → epoch milliseconds, UTC.

Accepted: ISO 8601 (``2026-11-23T10:00:00Z``, with an offset, or without one = UTC), Huawei's
``YYYY-MM-DD HH:MM:SS`` (UTC, as in the pushes), a bare date (midnight UTC), ``now``, and relative times such as
``-2h``, ``-90m``, ``-7d`` (before now). A window is ``[start, end)``: start inclusive, end exclusive, compared with
the Kafka record timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from voicecall.runtime.config import parse_duration


class BadTime(ValueError):
    """A command-line time that cannot be read; the message says which forms are accepted."""


FORMS = "ISO 8601 (2026-11-23T10:00:00Z), 'YYYY-MM-DD HH:MM:SS' (UTC), 'now' or relative like -2h, -30m, -7d"


def forms(flag: str) -> str:
    """:data:`FORMS` for the help of ``flag``: a relative time needs the = sign there (``-2h`` looks like a flag)."""
    return f"{FORMS} (write {flag}=-2h with an = sign)"


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse(text: str, now: datetime | None = None) -> int:
    """One command-line time → epoch milliseconds."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if not value:
        raise BadTime(f"empty time; use {FORMS}")
    if value.lower() == "now":
        return to_ms(now)
    if value[0] in "+-" and _is_duration(value[1:]):
        delta = round(parse_duration(value[1:]) * 1000)
        return to_ms(now) + (delta if value[0] == "+" else -delta)
    try:
        moment = datetime.fromisoformat(" ".join(value.split()).replace("z", "Z"))
    except ValueError:
        raise BadTime(f"not a time: {text!r}; use {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Huawei times and bare ISO times are UTC
    return to_ms(moment)


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Window:
    """Record timestamps ``start <= t < end`` (milliseconds); ``end`` None = open-ended."""

    start: int
    end: int | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end <= self.start:
            raise BadTime("the window is empty: --to must be after --from")

    def contains(self, timestamp_ms: int) -> bool:
        return timestamp_ms >= self.start and (self.end is None or timestamp_ms < self.end)


