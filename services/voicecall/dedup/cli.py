"""``voicecall dedup``: ``fee.raw`` → ``fee.unique`` exactly once per window, on the shared processing shell."""

from __future__ import annotations

import argparse
import asyncio

from voicecall import topics
from voicecall.dedup.config import DedupSettings
from voicecall.dedup.core import STAGE, DedupCore
from voicecall.dedup.metrics import MeteredCore
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.runtime.stage import Core, Stage, serve_stage


def stage(settings: DedupSettings) -> Stage:
    unique = topics.name(settings, "fee.unique")
    dead = topics.name(settings, "deadletter")
    changelog = topics.name(settings, "dedup.changelog")

    def make_core(partition: int) -> Core:
        return MeteredCore(DedupCore(partition, unique, dead, changelog, settings.dedup_window,
                                     settings.dedup_max_clock_skew, settings.deadletter_max_payload))

    return Stage(STAGE, topics.name(settings, "fee.raw"), make_core, deadletter_topic=dead, changelog_topic=changelog)


async def serve(settings: DedupSettings, stop: asyncio.Event) -> None:
    await serve_stage(settings, stage(settings), stop, window=settings.dedup_window)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", help="dedup window, e.g. 7d (VOICECALL_DEDUP_WINDOW)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz "
                                                         "(VOICECALL_METRICS_PORT)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(DedupSettings, dedup_window=args.window, kafka_bootstrap=args.bootstrap,
                           metrics_port=args.metrics_port)
    vlog.setup(settings.log_level, settings.log_format)
    return lifecycle.run(lambda stop: serve(settings, stop))
