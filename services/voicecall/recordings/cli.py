"""``voicecall recordings``: the recording downloader (``fee.unique`` → storage + ``recording.*``)."""

from __future__ import annotations

import argparse
import asyncio

from voicecall.recordings.config import RecordingsSettings
from voicecall.recordings.worker import serve
from voicecall.runtime import config, lifecycle, logging as vlog, metrics

SETTINGS = """settings (VOICECALL_* environment variables, default in brackets):
  VOICECALL_HUAWEI_BASE_URL              the record API's APP access address [https://rtccall.cn-north-1.myhuaweicloud.cn:443]
  VOICECALL_HUAWEI_APP_KEY / _APP_SECRET the AK/SK of the record API (the secret is never logged)
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
