"""``voicecall billing``: the billing core on the shared exactly-once shell (fee.unique → billing).

The consume-transform-produce loop, transactions, lag and per-stage counters are the shell's
(:mod:`voicecall.runtime.stage`); this module adds the billing counters and the ops server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Iterator
from typing import Any

from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from voicecall import topics
from voicecall.billing import rules
from voicecall.billing.config import BillingSettings
from voicecall.billing.core import BillingCore
from voicecall.runtime import config, lifecycle, logging as vlog, metrics
from voicecall.runtime.stage import Record, Stage, run_stage

# Counted when a record is processed: a batch whose transaction is aborted and re-run counts twice, so these are
# rates to watch, not a ledger (the billing topic is the ledger).
DEADLETTERS = Counter("voicecall_billing_deadletters_total", "Fee records refused, by reason", ["reason"])

_KNOWN_SERVICE_TYPES = {rules.CALLBACK, rules.NOTIFY}


class Totals(Collector):
    """Per-serviceType totals kept as plain integers and read at scrape time.

    Three prometheus_client ``inc()`` calls per record (each takes a lock) cost as much as the billing rules
    themselves; the stage and the ops server share one event loop thread, so plain integers are safe here.
    """

    def __init__(self) -> None:
        self.by_service_type: dict[str, list[int]] = {}  # label → [records, minutes, seconds]

    def add(self, label: str, minutes: int, seconds: int) -> None:
        totals = self.by_service_type.get(label)
        if totals is None:
            totals = self.by_service_type[label] = [0, 0, 0]
        totals[0] += 1
        totals[1] += minutes
        totals[2] += seconds

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = (
            CounterMetricFamily("voicecall_billing_records", "Fee records billed", labels=["service_type"]),
            CounterMetricFamily("voicecall_billing_minutes", "Billed minutes (sum over legs)",
                                labels=["service_type"]),
            CounterMetricFamily("voicecall_billing_seconds", "Talk seconds (sum over legs)", labels=["service_type"]),
        )
        for label, totals in sorted(self.by_service_type.items()):
            for family, total in zip(families, totals, strict=True):
                family.add_metric([label], total)
        yield from families


TOTALS = Totals()
REGISTRY.register(TOTALS)


class MeteredCore:
    """The pure core plus metrics (bounded labels: serviceTypes without a rate count as ``other``)."""

    def __init__(self, core: BillingCore) -> None:
        self.core = core
        self.known = _KNOWN_SERVICE_TYPES | set(core.tariff.rates)

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        result = self.core.evaluate(record)
        billed = result.billed
        if billed is not None:
            service_type = billed.effective_service_type
            label = "none" if service_type is None else service_type if service_type in self.known else "other"
            TOTALS.add(label, billed.total_billed_minutes, billed.total_seconds)
        elif result.reason is not None:
            DEADLETTERS.labels(result.reason).inc()
        return result.outputs

    def restore(self, record: ConsumerRecord[Any, Any]) -> None:
        self.core.restore(record)


def stage(settings: BillingSettings) -> Stage:
    tariff = settings.make_tariff()
    dead = topics.name(settings, "deadletter")

    def make_core(_partition: int) -> MeteredCore:
        return MeteredCore(BillingCore(billing_topic=topics.name(settings, "billing"), deadletter_topic=dead,
                                       tariff=tariff, max_payload=settings.deadletter_max_payload))

    return Stage(name="billing", input_topic=topics.name(settings, "fee.unique"), make_core=make_core,
                 deadletter_topic=dead)


async def serve(settings: BillingSettings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    ready = ready or asyncio.Event()
    log = vlog.get("billing")
    runner = await metrics.serve_ops(settings.metrics_host, settings.metrics_port,
                                     lambda: (ready.is_set(), {"stage": "billing"}))
    log.info("billing started", tariff=settings.make_tariff().describe(), ops_port=metrics.bound_port(runner))
    try:
        await run_stage(settings, stage(settings), stop, ready=ready)
    finally:
        await runner.cleanup()


def tune_gc() -> None:
    """Run CPython's cyclic collector less often: the hot path allocates ~20 container objects per record and
    makes no cycles, while the default gen-0 threshold (700) ran the collector every few dozen records over the
    shell's in-flight batch — about as much CPU as the billing rules (bench/billing.py). Reference counting still
    frees everything at once; only the rare cycle waits longer."""
    gc.collect()
    gc.freeze()  # what start-up allocated stays: never scan it again
    gc.set_threshold(50_000, 20, 20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--tariff", help="minor units per billed minute and leg, e.g. 002=18,001=18 "
                                         "(VOICECALL_BILLING_TARIFF)")
    parser.add_argument("--currency", help="ISO 4217 code of the tariff (VOICECALL_BILLING_CURRENCY)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz "
                                                         "(VOICECALL_METRICS_PORT)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(BillingSettings, kafka_bootstrap=args.bootstrap, billing_tariff=args.tariff,
                           billing_currency=args.currency, metrics_port=args.metrics_port)
    vlog.setup(settings.log_level, settings.log_format)
    tune_gc()
    return lifecycle.run(lambda stop: serve(settings, stop))
