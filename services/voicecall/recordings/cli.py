"""``voicecall recordings``: the recording downloader (``fee.unique`` → storage + ``recording.*``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
from yarl import URL

from voicecall import topics
from voicecall.recordings import safety
from voicecall.recordings.config import RecordingsSettings
from voicecall.recordings.store import Store
from voicecall.recordings.worker import Rebalance, Worker
from voicecall.runtime import config, kafka, lifecycle, logging as vlog, metrics, tracing


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


async def serve(settings: RecordingsSettings, stop: asyncio.Event, store: Store | None = None) -> None:
    """Run the downloader until ``stop`` is set; the store is opened from the settings unless given."""
    from voicecall.recordings.store import open_store

    tracing.setup("recordings")  # on only when the OTEL_* variables ask for it
    owns_store = store is None
    if store is None:
        store = await open_store(settings.recordings_store, s3_endpoint_url=settings.recordings_s3_endpoint_url,
                                 s3_region=settings.recordings_s3_region,
                                 s3_part_size=settings.recordings_s3_part_size,
                                 threads=settings.recordings_concurrency + 4)
    listener = Rebalance()
    consumer = kafka.make_consumer(settings, group_id=kafka.group_id(settings, "recordings"), wait=stop)
    consumer.subscribe([topics.name(settings, "fee.unique")], listener=listener)
    producer = kafka.make_producer(settings, client_suffix="-recordings", wait=stop)
    # The record API's own host is the operator's choice (possibly a private proxy): its addresses are trusted.
    # Download URLs still have to pass the allowlist (safety.url_refusal) before any connection is made.
    api_host = URL(settings.huawei_base_url).host
    connector = aiohttp.TCPConnector(resolver=safety.SafeResolver([*settings.allowed_hosts(),
                                                                   *([api_host] if api_host else [])]),
                                     limit=settings.recordings_concurrency * 2, ttl_dns_cache=60)
    timeout = aiohttp.ClientTimeout(total=settings.recordings_download_timeout,
                                    connect=settings.recordings_connect_timeout,
                                    sock_read=settings.recordings_read_timeout)
    session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                    trust_env=False)
    try:
        await producer.start()
        await consumer.start()
        worker = Worker(settings, store, session, producer, consumer)
        listener.worker = worker
        await worker.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()  # flushes what is still buffered
        with contextlib.suppress(Exception):
            await consumer.stop()
        await session.close()
        if owns_store:
            await store.close()
