"""The summary's bookkeeping (pure): which calls should end `missing`, in any order of outcomes."""

from __future__ import annotations

import itertools

from voicecall.simulator.summary import DELIVERED, GIVEN_UP, NOT_PUSHED, WITHHELD, CdrWatch, duration_text


def test_cdr_watch_in_either_order_and_holds_nothing_once_settled() -> None:
    cases = [("s1", True, DELIVERED), ("s2", True, WITHHELD), ("s3", False, WITHHELD), ("s4", True, GIVEN_UP),
             ("s5", False, DELIVERED)]
    for disconnect_first in itertools.product((True, False), repeat=len(cases)):
        watch = CdrWatch()
        for (session, accepted, fate), first in zip(cases, disconnect_first, strict=True):
            if first:
                watch.disconnect(session, 100.0 + int(session[1]), accepted)
            watch.cdr(session, fate)
            if not first:
                watch.disconnect(session, 100.0 + int(session[1]), accepted)
        assert watch.reasons == {WITHHELD: 1, GIVEN_UP: 1}
        assert (watch.first, watch.last) == (102.0, 104.0)
        assert not watch._open  # nothing held once both sides are known


def test_cdr_watch_close_counts_accepted_disconnects_without_a_cdr() -> None:
    watch = CdrWatch()
    watch.disconnect("ended", 50.0, True)  # its CDR was never pushed before the run stopped
    watch.disconnect("lost", 60.0, False)  # the receiver never saw the call end: no timer, never missing
    watch.cdr("odd", DELIVERED)
    watch.close()
    assert watch.reasons == {NOT_PUSHED: 1} and watch.count == 1 and watch.first == watch.last == 50.0


def test_duration_text() -> None:
    assert [duration_text(s) for s in (25200, 120, 90, 86400, 0.5)] == ["7h", "2m", "90s", "1d", "0.5s"]
