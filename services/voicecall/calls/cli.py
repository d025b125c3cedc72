"""``voicecall calls``: the call view on the shared exactly-once shell (status.raw, fee.unique, billing,
recording.stored, recording.failed → calls).

The five inputs are read as one co-partitioned unit per partition number; the core's state is restored from the
compacted ``calls`` topic itself (each record is a call's whole state), and its timers run on the shell's tick.
"""

from __future__ import annotations

import argparse
import asyncio

from voicecall import topics
from voicecall.calls.config import CallsSettings
from voicecall.calls.core import STAGE, CallsCore, Topics
from voicecall.calls.metrics import MeteredCore
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.runtime.stage import Stage, serve_stage


def topic_names(settings: CallsSettings) -> Topics:
    return Topics(status=topics.name(settings, "status.raw"), fee=topics.name(settings, "fee.unique"),
                  billing=topics.name(settings, "billing"), stored=topics.name(settings, "recording.stored"),
                  failed=topics.name(settings, "recording.failed"), calls=topics.name(settings, "calls"),
                  deadletter=topics.name(settings, "deadletter"))


def stage(settings: CallsSettings, names: Topics | None = None) -> Stage:
    """The stage on ``names`` (default: the settings' topics; the benchmark gives each round a topic of its own)."""
    names = names or topic_names(settings)

    def make_core(partition: int) -> MeteredCore:
        return MeteredCore(CallsCore(partition, names, grace=settings.calls_cdr_grace,
                                     retention=settings.calls_retention, max_payload=settings.deadletter_max_payload,
                                     hot=settings.calls_hot))

    return Stage(STAGE, names.status, make_core, deadletter_topic=names.deadletter, changelog_topic=names.calls,
                 more_inputs=(names.fee, names.billing, names.stored, names.failed),
                 tick_interval=settings.calls_timer_interval)


async def serve(settings: CallsSettings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    await serve_stage(settings, stage(settings), stop, ready, cdr_grace=settings.calls_cdr_grace,
                      retention=settings.calls_retention)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--cdr-grace", help="how long after its disconnect a call may wait for its CDR before it "
                                            "is flagged missing, e.g. 7h (VOICECALL_CALLS_CDR_GRACE)")
    parser.add_argument("--retention", help="how long a call stays after its newest input, e.g. 14d "
                                            "(VOICECALL_CALLS_RETENTION)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz "
                                                         "(VOICECALL_METRICS_PORT)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(CallsSettings, kafka_bootstrap=args.bootstrap, calls_cdr_grace=args.cdr_grace,
                           calls_retention=args.retention, metrics_port=args.metrics_port)
    vlog.setup(settings.log_level, settings.log_format)
    lifecycle.tune_gc()
    return lifecycle.run(lambda stop: serve(settings, stop))
