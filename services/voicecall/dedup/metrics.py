"""What ``voicecall dedup`` counts: the outcomes its pure core returns, and the size of the state it holds."""

from __future__ import annotations

import weakref
from typing import Any

from aiokafka.structs import ConsumerRecord
from prometheus_client import Gauge

from voicecall.dedup.core import CONFLICT, DUPLICATE, UNIQUE, DedupCore
from voicecall.runtime.metrics import Tally
from voicecall.runtime.record import Record

# Counted when a record is processed: a batch whose transaction is aborted and re-run counts twice, so these are
# rates to watch, not a ledger.
UNIQUES = Tally("voicecall_dedup_unique_total", "Records passed to fee.unique")
DUPLICATES = Tally("voicecall_dedup_duplicates_total", "Duplicates dropped (same sessionId and fingerprint)")
CONFLICTS = Tally("voicecall_dedup_conflicts_total", "Same sessionId, different content: deadlettered")
REJECTED = Tally("voicecall_dedup_rejected_total", "Records deadlettered before any decision, by reason", ["reason"])
EXPIRED = Tally("voicecall_dedup_expired_total", "State entries expired (changelog tombstones written)")
OUTSIDE = Tally("voicecall_dedup_outside_window_total", "Records older than the window: passed, not remembered")

_LIVE: weakref.WeakSet[DedupCore] = weakref.WeakSet()

STATE_KEYS = Gauge("voicecall_dedup_state_keys", "Keys held in the dedup state of the partitions owned")
STATE_KEYS.set_function(lambda: sum(len(core.state) for core in list(_LIVE)))
STATE_BYTES = Gauge("voicecall_dedup_state_bytes", "Bytes of the dedup state tables of the partitions owned")
STATE_BYTES.set_function(lambda: sum(core.state.nbytes for core in list(_LIVE)))


class MeteredCore:
    """The pure core, counted: the stage's ``Core``."""

    def __init__(self, core: DedupCore) -> None:
        self.core = core
        self._evaluate = core.evaluate
        self.restore = core.restore
        _LIVE.add(core)

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        result = self._evaluate(record)
        outcome = result.outcome
        if outcome == UNIQUE:
            UNIQUES.add()
            if result.outside:
                OUTSIDE.add()
        elif outcome == DUPLICATE:
            DUPLICATES.add()
        elif outcome == CONFLICT:
            CONFLICTS.add()
        else:
            REJECTED.add((str(result.reason),))
        if result.expired:
            EXPIRED.add(amount=result.expired)
        return result.outputs
