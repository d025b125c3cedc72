"""What ``voicecall calls`` counts: the outcomes its pure core returns, and the size of the state it holds."""

from __future__ import annotations

import weakref
from typing import Any

from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge

from voicecall.calls.core import CHANGED, REJECTED, CallsCore
from voicecall.runtime.metrics import Tally
from voicecall.runtime.record import Record

# Counted when processed or fired: a transaction that is aborted and re-run counts again, so these are rates to
# watch, not a ledger (the calls topic is the ledger).
INPUTS = Tally("voicecall_calls_inputs_total", "Input records by topic kind and outcome (changed, unchanged, "
               "rejected)", ["kind", "outcome"])
REJECTS = Tally("voicecall_calls_deadletters_total", "Input records deadlettered, by reason", ["reason"])
# Rare events (timers, late CDRs): plain counters. The alert VoicecallCdrMissing watches the first.
MISSING = Counter("voicecall_calls_cdr_missing_total",
                  "Calls flagged cdr missing: ended by a disconnect, no CDR within VOICECALL_CALLS_CDR_GRACE")
LATE = Counter("voicecall_calls_cdr_late_total", "CDRs that arrived for a call already flagged missing")
EXPIRED = Counter("voicecall_calls_expired_total", "Calls removed after VOICECALL_CALLS_RETENTION (tombstones)")
TICK_ERRORS = Counter("voicecall_calls_timer_errors_total", "Timers that could not be applied to their call "
                      "(retried a minute later)")

_LIVE: weakref.WeakSet[CallsCore] = weakref.WeakSet()

STATE_CALLS = Gauge("voicecall_calls_state_calls", "Calls held in the state of the partitions owned")
STATE_CALLS.set_function(lambda: sum(len(core) for core in list(_LIVE)))
STATE_BYTES = Gauge("voicecall_calls_state_bytes", "Bytes of the packed calls held in the state of the partitions "
                    "owned (without the calls in progress, kept decoded)")
STATE_BYTES.set_function(lambda: sum(core.nbytes for core in list(_LIVE)))


class MeteredCore:
    """The pure core, counted: the stage's ``Core`` (with timers)."""

    def __init__(self, core: CallsCore) -> None:
        self.core = core
        self._evaluate = core.evaluate
        self.restore = core.restore
        _LIVE.add(core)

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        result = self._evaluate(record)
        INPUTS.add((result.kind or "?", result.outcome))
        if result.outcome == REJECTED:
            REJECTS.add((str(result.reason),))
        elif result.outcome == CHANGED and result.late_cdr:
            LATE.inc()
        return result.outputs

    def tick(self, now: float) -> list[Record]:
        result = self.core.tick_result(now)
        if result.missing:
            MISSING.inc(result.missing)
        if result.expired:
            EXPIRED.inc(result.expired)
        if result.errors:
            TICK_ERRORS.inc(result.errors)
        return result.outputs
