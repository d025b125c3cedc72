"""Delivery faults, decided per call: status pushes out of order or twice, and CDRs that never arrive. Pure.

The platform pushes many calls concurrently, so a receiver can see a call's statuses out of order or twice. A
*late* push is held back and delivered right after the call's next push that is not late (so every late push
really arrives after an event that follows it; a call's last push, the ``disconnect``, is never late). A
*duplicated* push is delivered twice at once (the same bytes, two concurrent requests). A *withheld* CDR stands
for a receiver that was down for the first push and all six re-pushes: the simulator gives up on it at once
instead of waiting six hours, so the call ends ``missing`` on the receiver once its grace has passed.

Decisions come from their own ``random.Random``, so turning faults on does not change the calls themselves.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from voicecall.simulator.model import StatusEvent


@dataclass(frozen=True)
class Faults:
    late_share: float = 0.0  # of status pushes other than a call's last: delivered after the call's next push
    duplicate_share: float = 0.0  # of status pushes: delivered twice, concurrently
    lost_cdr_share: float = 0.0  # of calls: the CDR never reaches the receiver
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("late_share", "duplicate_share", "lost_cdr_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")

    def rng(self) -> random.Random:
        return random.Random(f"{self.seed}/delivery")


@dataclass(frozen=True)
class Delivery:
    at: float  # simulated time it is pushed: the event's own time, or a later event's when late
    event: StatusEvent
    late: bool = False
    copies: int = 1


def plan(events: Sequence[StatusEvent], rng: random.Random, late_share: float = 0.0,
         duplicate_share: float = 0.0) -> list[Delivery]:
    """The order (and times) in which one call's status events are pushed."""
    out: list[Delivery] = []
    held: list[tuple[StatusEvent, int]] = []
    last = len(events) - 1
    for index, event in enumerate(events):
        copies = 2 if duplicate_share > 0 and rng.random() < duplicate_share else 1
        if index < last and late_share > 0 and rng.random() < late_share:
            held.append((event, copies))
            continue
        out.append(Delivery(event.at, event, False, copies))
        out.extend(Delivery(event.at, late, True, late_copies) for late, late_copies in held)
        held.clear()
    return out


def withheld(rng: random.Random, lost_cdr_share: float) -> bool:
    """Whether this call's CDR is never delivered (one draw per call, only when the share is on)."""
    return lost_cdr_share > 0 and rng.random() < lost_cdr_share
