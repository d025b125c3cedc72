"""``voicecall billing``: the billing core on the shared exactly-once shell (fee.unique → billing).

The consume-transform-produce loop, transactions, lag and per-stage counters are the shell's
(:mod:`voicecall.runtime.stage`); the billing counters are in :mod:`.metrics`; this module wires them and the ops
server.
"""

from __future__ import annotations

import argparse
import asyncio

from voicecall import topics
from voicecall.billing.config import BillingSettings
from voicecall.billing.core import BillingCore
from voicecall.billing.metrics import SLO_SECONDS, MeteredCore
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.runtime.lifecycle import tune_gc
from voicecall.runtime.stage import Stage, serve_stage

__all__ = ["add_arguments", "main", "serve", "stage", "tune_gc"]  # tune_gc: bench/billing.py applies it too


def stage(settings: BillingSettings) -> Stage:
    tariff = settings.make_tariff()
    dead = topics.name(settings, "deadletter")

    def make_core(_partition: int) -> MeteredCore:
        return MeteredCore(BillingCore(billing_topic=topics.name(settings, "billing"), deadletter_topic=dead,
                                       tariff=tariff, max_payload=settings.deadletter_max_payload))

    return Stage(name="billing", input_topic=topics.name(settings, "fee.unique"), make_core=make_core,
                 deadletter_topic=dead)


async def serve(settings: BillingSettings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    SLO_SECONDS.set(settings.slo_billing_seconds)  # the VoicecallBillingLate alert's threshold
    await serve_stage(settings, stage(settings), stop, ready, tariff=settings.make_tariff().describe())


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
