"""Helpers of the recordings tests: a recording API per reference §5.2, a real S3 server, a running pipeline.

The recording API is a small aiohttp server with the platform's behaviour (AK/SK verified, 301 + Location,
1012007 for unknown files) and fault knobs (first N calls 503, slow transfers, a redirect to another host).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import TopicPartition

from contracts.validate import ContractError, validate_record
from voicecall import huawei, topics
from voicecall.recordings.cli import serve
from voicecall.recordings.config import RecordingsSettings
from voicecall.recordings.store import Store
from voicecall.runtime import config
from voicecall.runtime.kafka import group_id, make_consumer, make_producer

APP_KEY = "test-app-key"
APP_SECRET = "test-app-secret-never-logged"
BLOCK = 64 * 1024
# Relative to now: the worker stops retrying once the platform has deleted a recording (7 days after the call),
# so a fixed date would turn every retry test into an immediate give-up a week after it was written.
CALL_END = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def wav_chunks(name: str, size: int) -> Iterator[bytes]:
    """Deterministic bytes for a file name: a WAV-looking header then 64 KiB pseudo-random blocks."""
    head = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt "
    produced = 0
    index = 0
    while produced < size:
        block = random.Random(f"{name}:{index}").randbytes(BLOCK)
        if index == 0:
            block = head + block[len(head):]
        piece = block[: size - produced]
        produced += len(piece)
        index += 1
        yield piece


def wav_sha256(name: str, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in wav_chunks(name, size):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class RecordingApi:
    """The platform's record API plus the file server its Location points to."""

    app_key: str = APP_KEY
    app_secret: str = APP_SECRET
    files: dict[str, int] = field(default_factory=dict)  # fileName → size
    fail_first: dict[str, int] = field(default_factory=dict)  # fileName → 503 answers still to give
    chunk_delay: dict[str, float] = field(default_factory=dict)  # fileName → seconds between 64 KiB chunks
    api_calls: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    started: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    tokens: dict[str, str] = field(default_factory=dict)
    signatures: list[dict[str, str]] = field(default_factory=list)  # X-AKSK fields of every record-API call
    transfers: list[tuple[str, int]] = field(default_factory=list)  # (name, +1 start / -1 end), in order
    port: int = 0

    def add(self, name: str, size: int = 200_000, *, fail_first: int = 0, chunk_delay: float = 0.0) -> str:
        """Register a file; returns its sha256."""
        self.files[name] = size
        token = hashlib.sha256(name.encode()).hexdigest()[:24]
        self.tokens[token] = name
        if fail_first:
            self.fail_first[name] = fail_first
        if chunk_delay:
            self.chunk_delay[name] = chunk_delay
        return wav_sha256(name, size)

    def file_url(self, name: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}/files/{hashlib.sha256(name.encode()).hexdigest()[:24]}"

    def bounce_url(self, name: str) -> str:
        """Served on localhost, redirects to the same file on 127.0.0.1: another host."""
        return f"http://localhost:{self.port}/bounce/{hashlib.sha256(name.encode()).hexdigest()[:24]}"

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    def _signed(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") != huawei.AUTHORIZATION:
            return False
        fields = huawei.parse_x_aksk(request.headers.get("X-AKSK", ""))
        if fields.get("Username") != self.app_key or not fields.get("Nonce") or not fields.get("Created"):
            return False
        expected = huawei.password_digest(self.app_secret, fields["Nonce"], fields["Created"])
        return fields.get("PasswordDigest") == expected and fields["Created"].endswith("Z")

    async def record(self, request: web.Request) -> web.Response:
        name = request.query.get("fileName", "")
        self.api_calls[name] += 1
        self.signatures.append({"fileName": name, **huawei.parse_x_aksk(request.headers.get("X-AKSK", ""))})
        if not self._signed(request):
            self.bad_signatures += 1
            return web.json_response({"resultcode": "1023037", "resultdesc": "PasswordDigest invalid"}, status=400)
        if not request.query.get("recordDomain"):
            return web.json_response({"resultcode": "1010002", "resultdesc": "Invalid request."}, status=400)
        if self.fail_first.get(name, 0) > 0:
            self.fail_first[name] -= 1
            return web.json_response({"resultcode": "1010001", "resultdesc": "Internal system error."}, status=503)
        if name not in self.files:
            return web.json_response({"resultcode": "1012007", "resultdesc": "The record does not exist."},
                                     status=404)
        location = self.file_url(name, request.url.host or "localhost")
        return web.Response(status=301, headers={"Location": location, "Connection": "close"})

    async def download(self, request: web.Request) -> web.StreamResponse:
        name = self.tokens.get(request.match_info["token"])
        if name is None or name not in self.files:
            return web.Response(status=404)
        self.started[name] += 1
        self.transfers.append((name, 1))
        try:
            size = self.files[name]
            response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
            response.content_length = size
            await response.prepare(request)
            for chunk in wav_chunks(name, size):
                delay = self.chunk_delay.get(name, 0.0)  # read per chunk: a test may speed a transfer up
                if delay:
                    await asyncio.sleep(delay)
                await response.write(chunk)
                self.bytes_sent[name] += len(chunk)
            await response.write_eof()
            self.completed[name] += 1
            return response
        finally:
            self.transfers.append((name, -1))

    def peak_transfers(self, names: set[str]) -> int:
        """The most transfers of ``names`` that ran at the same time."""
        running = peak = 0
        for name, step in self.transfers:
            if name in names:
                running += step
                peak = max(peak, running)
        return peak

    async def bounce(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{self.port}/files/{token}"})

    def hop_url(self, name: str) -> str:
        """Served on localhost, redirects (relative Location) to the same file on the same origin."""
        return f"http://localhost:{self.port}/hop/{hashlib.sha256(name.encode()).hexdigest()[:24]}"

    async def hop(self, request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": f"/files/{request.match_info['token']}"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/rest/provision/voice/record/v1.0", self.record)
        app.router.add_get("/files/{token}", self.download)
        app.router.add_get("/bounce/{token}", self.bounce)
        app.router.add_get("/hop/{token}", self.hop)
        return app


# --- S3: a real SeaweedFS server ------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str
    bucket: str


def _wait_for_s3(endpoint: str, bucket: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async def create_bucket() -> None:
        from aiobotocore.session import get_session

        async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
            await client.create_bucket(Bucket=bucket)

    deadline = time.monotonic() + 90
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"weed exited with {process.returncode}: {log.read_text()[-2000:]}", pytrace=False)
        try:
            asyncio.run(create_bucket())
            return
        except Exception as error:  # not up yet
            last = error
            time.sleep(0.5)
    pytest.fail(f"SeaweedFS S3 did not come up in 90 s (CI={os.environ.get('CI', '')!r}): {last!r}", pytrace=False)


# --- the pipeline around the worker ----------------------------------------------------------------------------


def fee_record(session_id: str, *, talk: int = 20, object_name: str | None = None, domain: str | None = "rec.test",
               url: str | None = None, **extra: Any) -> dict[str, Any]:
    """A voice-callback fee record whose B leg talked ``talk`` seconds."""
    fmt = "%Y-%m-%d %H:%M:%S"
    record: dict[str, Any] = {
        "direction": 0, "spId": "sp", "appKey": APP_KEY, "bindNum": "+8675500000000", "sessionId": session_id,
        "callerNum": "+8613800000001", "calleeNum": "+8613800000002", "fwdDstNum": "+8613800000003",
        "callOutAnswerTime": (CALL_END - timedelta(seconds=talk + 10)).strftime(fmt),
        "fwdAnswerTime": (CALL_END - timedelta(seconds=talk)).strftime(fmt),
        "callEndTime": CALL_END.strftime(fmt), "recordFlag": 1, "serviceType": "002",
    }
    if object_name is not None:
        record["recordObjectName"] = object_name
        record["recordBucketName"] = "bucket"
        if domain is not None:
            record["recordDomain"] = domain
    if url is not None:
        record["recordFileDownloadUrl"] = url
    record.update(extra)
    return record


@dataclass
class Pipeline:
    settings: RecordingsSettings
    events: dict[str, list[tuple[str, dict[str, Any], dict[str, bytes]]]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    producer: Any = None
    contract_errors: list[str] = field(default_factory=list)

    async def send(self, record: dict[str, Any], partition: int | None = None) -> None:
        await self.producer.send_and_wait(topics.name(self.settings, "fee.unique"), orjson.dumps(record),
                                          key=record["sessionId"].encode(), partition=partition)

    async def wait_for(self, session_id: str, count: int = 1, timeout: float = 30.0
                       ) -> list[tuple[str, dict[str, Any], dict[str, bytes]]]:
        deadline = time.monotonic() + timeout
        while len(self.events.get(session_id, [])) < count:
            assert not self.contract_errors, self.contract_errors
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = self.events.get(session_id)
                raise AssertionError(f"no {count} event(s) for {session_id} in {timeout} s: {seen}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout=min(remaining, 0.5))
        assert not self.contract_errors, self.contract_errors
        return self.events[session_id]


def make_settings(kafka_bootstrap: str, base_url: str, store: str, **overrides: Any) -> RecordingsSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap, "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "huawei_base_url": base_url, "huawei_app_key": APP_KEY, "huawei_app_secret": APP_SECRET,
        "recordings_store": store, "recordings_allowed_hosts": "localhost", "recordings_retry_initial": "0.2s",
        "recordings_retry_max": "1s", "recordings_commit_interval": "0.2s", "metrics_port": 0,
    }
    values.update(overrides)
    return config.load(RecordingsSettings, **values)


async def create_topics(settings: RecordingsSettings) -> None:
    topic_settings = config.load(topics.TopicSettings, kafka_bootstrap=settings.kafka_bootstrap,
                                 topic_prefix=settings.topic_prefix, topic_partitions=3, topic_replication=1,
                                 topic_min_insync=1)
    await topics.create(topic_settings)


async def warm_up(pipeline: Pipeline, serving: asyncio.Task[None], timeout: float = 120.0) -> None:
    """Wait until the worker has joined its group and committed past a skipped record on every partition: the
    first consumer group on a fresh broker can take a while (the offsets topic is created on demand)."""
    settings = pipeline.settings
    fee_topic = topics.name(settings, "fee.unique")
    for partition in range(3):
        await pipeline.send(fee_record(f"warm-up-{partition}", recordFlag=0), partition=partition)
    checker = make_consumer(settings, group_id=group_id(settings, "recordings"))
    await checker.start()
    try:
        deadline = time.monotonic() + timeout
        tps = [TopicPartition(fee_topic, p) for p in range(3)]
        while True:
            if serving.done():
                serving.result()  # raises what killed the worker
            committed = [await checker.committed(tp) for tp in tps]
            if all(c is not None and c >= 1 for c in committed):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not commit within {timeout} s: {committed}")
            await asyncio.sleep(0.2)
    finally:
        await checker.stop()


@contextlib.asynccontextmanager
async def running_pipeline(settings: RecordingsSettings, store: Store | None = None, *, worker: bool = True
                           ) -> AsyncIterator[Pipeline]:
    """Topics, a producer for fee.unique, a reader of recording.* — and the worker in this process."""
    await create_topics(settings)
    pipeline = Pipeline(settings)
    pipeline.producer = make_producer(settings)
    await pipeline.producer.start()
    reader = make_consumer(settings, topics.name(settings, "recording.stored"),
                           topics.name(settings, "recording.failed"), group_id=None)
    await reader.start()

    async def read() -> None:
        async for message in reader:
            try:  # every event must fit its topic's contract (schemas/asyncapi.yaml and the JSON Schemas)
                validate_record(message.topic, message.key, message.value, message.headers, settings.topic_prefix)
            except ContractError as error:
                pipeline.contract_errors.append(str(error))
            value = orjson.loads(message.value)
            kind = message.topic.rsplit(".", 1)[1]
            pipeline.events.setdefault(value["sessionId"], []).append(
                (kind, value, {k: v for k, v in message.headers}))
            pipeline.arrived.set()

    reading = asyncio.create_task(read())
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, stop, store)) if worker else None
    try:
        if serving is not None:
            await warm_up(pipeline, serving)
        yield pipeline
    finally:
        stop.set()
        if serving is not None:
            await asyncio.wait_for(serving, timeout=30)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await reader.stop()
        await pipeline.producer.stop()
