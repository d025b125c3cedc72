"""What ``voicecall billing`` counts: the outcomes its pure core returns (bounded labels: serviceTypes without a
rate count as ``other``)."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord
from prometheus_client import Gauge

from voicecall.billing import rules
from voicecall.billing.core import BillingCore
from voicecall.runtime.metrics import Tally
from voicecall.runtime.record import Record

# Counted when a record is processed: a batch whose transaction is aborted and re-run counts twice, so these are
# rates to watch, not a ledger (the billing topic is the ledger).
RECORDS = Tally("voicecall_billing_records_total", "Fee records billed", ["service_type"])
MINUTES = Tally("voicecall_billing_minutes_total", "Billed minutes (sum over legs)", ["service_type"])
SECONDS = Tally("voicecall_billing_seconds_total", "Talk seconds (sum over legs)", ["service_type"])
# The alert compares push → billing age (voicecall_event_age_seconds) with the threshold the deployment configured.
SLO_SECONDS = Gauge("voicecall_slo_billing_seconds", "VOICECALL_SLO_BILLING_SECONDS: push → billing p99 objective "
                    "for first pushes")
DEADLETTERS = Tally("voicecall_billing_deadletters_total", "Fee records refused, by reason", ["reason"])

_KNOWN_SERVICE_TYPES = {rules.CALLBACK, rules.NOTIFY}


class MeteredCore:
    """The pure core, counted: the stage's ``Core``."""

    def __init__(self, core: BillingCore) -> None:
        self.core = core
        self._evaluate = core.evaluate
        self.restore = core.restore
        self.known = _KNOWN_SERVICE_TYPES | set(core.tariff.rates)

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        result = self._evaluate(record)
        billed = result.billed
        if billed is not None:
            service_type = billed.effective_service_type
            label = ("none" if service_type is None else service_type if service_type in self.known else "other",)
            RECORDS.add(label)
            MINUTES.add(label, billed.total_billed_minutes)
            SECONDS.add(label, billed.total_seconds)
        elif result.reason is not None:
            DEADLETTERS.add((str(result.reason),))
        return result.outputs
