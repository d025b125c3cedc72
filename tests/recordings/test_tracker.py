"""Offsets committed only up to the lowest unfinished record; the retry schedule (pure)."""

from __future__ import annotations

import random

from voicecall.recordings.tracker import OffsetTracker, backoff


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() is None
    for offset in (10, 11, 12, 13):
        tracker.add(offset)
    assert tracker.committable() == 10
    tracker.done(12)
    tracker.done(13)
    assert tracker.committable() == 10  # 10 and 11 are still running
    tracker.done(10)
    assert tracker.committable() == 11
    tracker.done(11)
    assert tracker.committable() == 14 and tracker.unfinished == 0


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff(n, 1.0, 60.0, rng) for n in range(1, 12)]
    assert all(0.5 * min(60.0, 2 ** (n - 1)) <= d <= min(60.0, 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert max(delays) <= 60.0 and delays[5] > delays[0]
    assert len({round(backoff(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 1
