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
from voicecall.runtime import config, kafka, lifecycle, logging as vlog, metrics

SETTINGS = """settings (VOICECALL_* environment variables, default in brackets):
  VOICECALL_HUAWEI_BASE_URL              the record API's APP access address [https://rtccall.cn-north-1.myhuaweicloud.cn:443]
  VOICECALL_HUAWEI_APP_KEY / _APP_SECRET the AK/SK of the record API (the secret is never logged)
  VOICECALL_HUAWEI_APPS_FILE             several apps: JSON {"<appKey>": "<secret>" | ["<s1>", "<s2>"]}, re-read
                                         on change; the CDR's appKey picks the app
  VOICECALL_RECORDINGS_STORE             file:///path, a path, or s3://bucket/prefix [.state/recordings]
  VOICECALL_RECORDINGS_ALLOWED_HOSTS     download hosts, comma-separated names or *.suffix
                                         [the base URL's host and Huawei Cloud's domains]
  VOICECALL_RECORDINGS_CONCURRENCY       parallel downloads [16]
  VOICECALL_RECORDINGS_MAX_PENDING       records held at once, downloading or waiting to retry [2000]
  VOICECALL_RECORDINGS_MAX_BYTES         largest recording accepted [200MB]
  VOICECALL_RECORDINGS_RETRY_DEADLINE    give up on transient failures after [6h] (and 7 days after the call)
  VOICECALL_RECORDINGS_RETRY_INITIAL / _RETRY_MAX       backoff between attempts, with jitter [1s / 10m]
  VOICECALL_RECORDINGS_CONNECT_TIMEOUT / _READ_TIMEOUT  per connection / between two chunks [10s / 60s]
  VOICECALL_RECORDINGS_DOWNLOAD_TIMEOUT  one whole attempt [30m]
  VOICECALL_RECORDINGS_COMMIT_INTERVAL   offset commits [1s]
  VOICECALL_RECORDINGS_S3_ENDPOINT_URL / _S3_REGION / _S3_PART_SIZE
                                         S3-compatible endpoint, region, multipart part size [AWS / us-east-1 / 5MiB]
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = SETTINGS
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

    owns_store = store is None
    if store is None:
        store = await open_store(settings.recordings_store, s3_endpoint_url=settings.recordings_s3_endpoint_url,
                                 s3_region=settings.recordings_s3_region,
                                 s3_part_size=settings.recordings_s3_part_size,
                                 threads=settings.recordings_concurrency + 4)
    listener = Rebalance()
    consumer = kafka.make_consumer(settings, group_id=kafka.group_id(settings, "recordings"))
    consumer.subscribe([topics.name(settings, "fee.unique")], listener=listener)
    producer = kafka.make_producer(settings, client_suffix="-recordings")
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
