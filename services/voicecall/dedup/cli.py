"""``voicecall dedup``: ``fee.raw`` → ``fee.unique`` exactly once per window, on the shared processing shell."""

from __future__ import annotations

import argparse
import asyncio
import weakref

from prometheus_client import Gauge

from voicecall import topics
from voicecall.dedup.config import DedupSettings
from voicecall.dedup.core import STAGE, DedupCore
from voicecall.runtime import config, lifecycle, logging as vlog, metrics
from voicecall.runtime.stage import Core, Stage, run_stage

_LIVE: weakref.WeakSet[DedupCore] = weakref.WeakSet()

STATE_KEYS = Gauge("voicecall_dedup_state_keys", "Keys held in the dedup state of the partitions owned")
STATE_KEYS.set_function(lambda: sum(len(core.state) for core in list(_LIVE)))
STATE_BYTES = Gauge("voicecall_dedup_state_bytes", "Bytes of the dedup state tables of the partitions owned")
STATE_BYTES.set_function(lambda: sum(core.state.nbytes for core in list(_LIVE)))


def stage(settings: DedupSettings) -> Stage:
    unique = topics.name(settings, "fee.unique")
    dead = topics.name(settings, "deadletter")
    changelog = topics.name(settings, "dedup.changelog")

    def make_core(partition: int) -> Core:
        core = DedupCore(partition, unique, dead, changelog, settings.dedup_window, settings.dedup_max_clock_skew,
                         settings.deadletter_max_payload)
        _LIVE.add(core)
        return core

    return Stage(STAGE, topics.name(settings, "fee.raw"), make_core, deadletter_topic=dead, changelog_topic=changelog)


async def serve(settings: DedupSettings, stop: asyncio.Event) -> None:
    ready = asyncio.Event()
    runner = await metrics.serve_ops(settings.metrics_host, settings.metrics_port,
                                     lambda: (ready.is_set(), {"stage": STAGE}))
    vlog.get("dedup").info("ops server listening", port=metrics.bound_port(runner))
    try:
        await run_stage(settings, stage(settings), stop, ready=ready)
    finally:
        await runner.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", help="dedup window, e.g. 7d (VOICECALL_DEDUP_WINDOW)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(DedupSettings, dedup_window=args.window, kafka_bootstrap=args.bootstrap)
    vlog.setup(settings.log_level, settings.log_format)
    return lifecycle.run(lambda stop: serve(settings, stop))
