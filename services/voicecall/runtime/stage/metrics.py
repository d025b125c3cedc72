"""The shell's Prometheus metrics, with the label children of one stage bound once (``labels()`` costs µs)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("voicecall_stage_records_in_total", "Input records processed (committed or not)", ["stage"])
RECORDS_OUT = Counter("voicecall_stage_records_out_total", "Records produced in committed transactions",
                      ["stage", "topic"])
PROCESS_ERRORS = Counter("voicecall_stage_process_errors_total", "Records whose processing raised (deadlettered)",
                         ["stage"])
TXN_SECONDS = Histogram("voicecall_stage_transaction_seconds", "Transaction latency, begin to commit acknowledged",
                        ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
TXN_COMMITS = Counter("voicecall_stage_transactions_total", "Committed transactions", ["stage"])
TXN_ABORTS = Counter("voicecall_stage_transaction_aborts_total", "Failed or aborted transactions", ["stage"])
FENCED = Counter("voicecall_stage_fenced_total", "Times a partition's producer was fenced by a newer owner",
                 ["stage"])
LAG = Gauge("voicecall_stage_consumer_lag", "Records between the committed position and the end of the partition",
            ["stage", "partition"])
RESTORE_SECONDS = Histogram("voicecall_stage_restore_seconds", "Time to restore partitions' state from the changelog",
                            ["stage"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
RESTORED = Counter("voicecall_stage_restored_records_total", "Changelog records applied during restores", ["stage"])
RESTORE_ERRORS = Counter("voicecall_stage_restore_errors_total",
                         "Changelog records the core could not apply during a restore (skipped)", ["stage"])
ASSIGNED = Gauge("voicecall_stage_assigned_partitions", "Input partitions owned and ready", ["stage"])


class StageMetrics:
    """The metrics of one stage."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.records_in = RECORDS_IN.labels(stage)
        self.errors = PROCESS_ERRORS.labels(stage)
        self.transaction_seconds = TXN_SECONDS.labels(stage)
        self.commits = TXN_COMMITS.labels(stage)
        self.aborts = TXN_ABORTS.labels(stage)
        self.fenced = FENCED.labels(stage)
        self.restore_seconds = RESTORE_SECONDS.labels(stage)
        self.restored = RESTORED.labels(stage)
        self.restore_errors = RESTORE_ERRORS.labels(stage)
        self.assigned = ASSIGNED.labels(stage)
        self._out: dict[str, Any] = {}

    def records_out(self, topic: str, count: int) -> None:
        child = self._out.get(topic)
        if child is None:
            child = self._out[topic] = RECORDS_OUT.labels(self.stage, topic)
        child.inc(count)

    def lag(self, partition: int) -> Any:
        return LAG.labels(self.stage, str(partition))

    def forget_lag(self, partition: int) -> None:
        """A revoked partition's lag is another instance's to report."""
        with contextlib.suppress(KeyError):
            LAG.remove(self.stage, str(partition))
