"""Timers by wall clock, kept as an index over the calls in the state (rebuilt from it after a restore).

A :class:`Wheel` files each call under the end of the time slot its timer falls in; a slot is fired once the clock
has passed its end, so a timer fires at its time or within one slot width after it, never before (or, asked for
the current slot too, at its time). One call is in at most one slot of a wheel (moving a timer moves the call), so
the index costs one set entry per call with a timer, and the caller re-checks each fired call against its state.
"""

from __future__ import annotations

import math


class Wheel:
    def __init__(self, width: float) -> None:
        self.width = width
        self.slots: dict[int, set[str]] = {}

    @staticmethod
    def for_delay(delay: float, *, low: float = 1.0, high: float) -> Wheel:
        """A wheel whose slots are a hundredth of the delay its timers are set for, within [low, high] seconds."""
        return Wheel(min(max(delay / 100, low), high))

    def _slot(self, due: float) -> int:
        return math.ceil(due / self.width)

    def move(self, key: str, old: float | None, new: float | None) -> None:
        """Re-file ``key`` from its timer at ``old`` to ``new`` (either None: no timer)."""
        if old is not None and (new is None or self._slot(old) != self._slot(new)):
            slot = self.slots.get(self._slot(old))
            if slot is not None:
                slot.discard(key)
                if not slot:
                    del self.slots[self._slot(old)]
        if new is not None:
            self.slots.setdefault(self._slot(new), set()).add(key)

    def due(self, now: float, *, current: bool = False) -> list[str]:
        """Take out every call filed in a slot that has ended by ``now`` — and with ``current`` those of the slot
        ``now`` is in, whose timers may or may not be due yet (the caller files those back): exact to the tick,
        for a wheel whose slots hold few calls by the time they come due."""
        limit = now + self.width if current else now
        fired: list[str] = []
        for slot in [s for s in self.slots if s * self.width <= limit]:
            fired.extend(self.slots.pop(slot))
        return fired

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.slots.values())
