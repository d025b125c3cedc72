"""``voicecall recordings``: the recording downloader (``fee.unique`` → storage + ``recording.*``)."""

from __future__ import annotations

import argparse
import asyncio

from voicecall.recordings.config import RecordingsSettings
from voicecall.recordings.worker import serve
from voicecall.runtime import config, lifecycle, logging as vlog, metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--store", help="file:///path or s3://bucket/prefix (VOICECALL_RECORDINGS_STORE)")
    parser.add_argument("--concurrency", type=int, help="parallel downloads (VOICECALL_RECORDINGS_CONCURRENCY)")
    parser.add_argument("--metrics-port", type=int, help="ops server port (VOICECALL_METRICS_PORT)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(RecordingsSettings, kafka_bootstrap=args.bootstrap, recordings_store=args.store,
                           recordings_concurrency=args.concurrency, metrics_port=args.metrics_port)
    vlog.setup(settings.log_level, settings.log_format)
    log = vlog.get("recordings")

    async def service(stop: asyncio.Event) -> None:
        ops = await metrics.serve_ops(settings.metrics_host, settings.metrics_port)
        log.info("recordings starting", store=settings.recordings_store, allowed_hosts=settings.allowed_hosts(),
                 concurrency=settings.recordings_concurrency, metrics_port=metrics.bound_port(ops))
        try:
            await serve(settings, stop)
        finally:
            await ops.cleanup()

    return lifecycle.run(service)
