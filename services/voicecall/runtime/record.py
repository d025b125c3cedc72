"""The one record type the project produces: what a stage's core returns and what the ingress publishes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more (one or two per input)
class Record:
    """One record to produce. ``topic`` is the full name; ``value`` None is a tombstone (changelog expiry)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
