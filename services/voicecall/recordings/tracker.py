"""Per-partition offset bookkeeping and the retry schedule (pure), and waiting for the first of some events.

Records finish out of order (a slow or retrying download next to quick skips), so a partition's committable
offset is the lowest offset not yet finished: a crash re-reads every unfinished record and some finished ones
(which the store's idempotence turns into cheap no-ops), and never loses one.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from typing import Any


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._heap: list[int] = []
        self._next: int | None = None  # one past the highest offset seen

    def add(self, offset: int) -> None:
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        if self._next is None or offset >= self._next:
            self._next = offset + 1

    def done(self, offset: int) -> None:
        self._pending.discard(offset)
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)

    @property
    def unfinished(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None before any record."""
        if self._heap:
            return self._heap[0]
        return self._next


def backoff(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for the ``attempt``-th failure (1-based): between half and all of
    ``initial · 2^(attempt-1)``, capped at ``maximum``; the jitter spreads retries of a burst of failures."""
    base: float = min(maximum, initial * (2.0 ** min(attempt - 1, 60)))
    jitter: float = (rng or random).random()
    return base * (0.5 + 0.5 * jitter)


async def wait_any(*events_and_timeout: Any, timeout: float) -> None:
    """Until one of the events is set or ``timeout`` passes."""
    waiters = [asyncio.create_task(event.wait()) for event in events_and_timeout]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
