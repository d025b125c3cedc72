"""The downloader end to end: real broker, the recording API server, file and S3 stores."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from recordings_support import (
    APP_KEY,
    APP_SECRET,
    CALL_END,
    Pipeline,
    RecordingApi,
    S3Server,
    fee_record,
    make_settings,
    running_pipeline,
)

from voicecall import topics
from voicecall.recordings.cli import serve
from voicecall.recordings.metrics import SKIPPED
from voicecall.recordings.store import FileStore, Stored, open_store
from voicecall.runtime import cloudevents, times
from voicecall.runtime.kafka import group_id, make_consumer
from voicecall.simulator.recording_api import RecordingApi as SimulatorApi


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings-store")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pipeline(kafka_bootstrap: str, recording_api: RecordingApi, store_root: Path) -> AsyncIterator[Pipeline]:
    settings = make_settings(kafka_bootstrap, recording_api.base_url, store_root.as_uri())
    async with running_pipeline(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def simulator() -> AsyncIterator[SimulatorApi]:
    """The simulator's recording API (voicecall simulate's own), on 127.0.0.1."""
    async with SimulatorApi(APP_KEY, APP_SECRET) as api:
        yield api


def simulator_settings(kafka_bootstrap: str, api: SimulatorApi, store: str, **overrides: Any) -> Any:
    return make_settings(kafka_bootstrap, api.base_url, store, recordings_allowed_hosts="127.0.0.1", **overrides)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim_pipeline(kafka_bootstrap: str, simulator: SimulatorApi, store_root: Path) -> AsyncIterator[Pipeline]:
    settings = simulator_settings(kafka_bootstrap, simulator, store_root.as_uri(), recordings_retry_deadline="3s")
    async with running_pipeline(settings) as running:
        yield running


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def new_id() -> str:
    return f"1201_612_{uuid.uuid4().hex[:10]}@callenabler245.huaweicaas.com"


def only(events: list[tuple[str, dict[str, Any], dict[str, bytes]]]) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    assert len(events) == 1, events
    return events[0]


async def test_happy_path_to_the_file_store(sim_pipeline: Pipeline, simulator: SimulatorApi,
                                            store_root: Path) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(name, 700_000, domain="rec.test")
    sha = simulator.sha256(name)
    await sim_pipeline.send(fee_record(session_id, object_name=name))
    kind, value, headers = only(await sim_pipeline.wait_for(session_id))
    assert kind == "stored"
    assert headers["ce_type"] == cloudevents.TYPE_RECORDING_STORED.encode() and headers["ce_specversion"] == b"1.0"
    assert value["sha256"] == sha and value["bytes"] == 700_000 and value["recordObjectName"] == name
    assert value["attempts"] == 1 and value["callEndTime"] == times.iso_z(CALL_END)
    path = Path(value["uri"].removeprefix("file://"))
    assert inside(path, store_root) and await asyncio.to_thread(file_sha256, path) == sha
    assert simulator.attempts[name] == 1 and simulator.download_attempts[name] == 1
    assert not any(answer.startswith(("400", "401")) for answer in simulator.answers)  # signatures accepted

    # Re-delivered (e.g. replay): stored again on the topic, never downloaded again.
    await sim_pipeline.send(fee_record(session_id, object_name=name))
    events = await sim_pipeline.wait_for(session_id, count=2)
    assert events[1][1]["sha256"] == sha and events[1][1]["attempts"] == 0
    assert simulator.attempts[name] == 1 and simulator.download_attempts[name] == 1


async def test_short_call_is_never_requested(pipeline: Pipeline, recording_api: RecordingApi) -> None:
    short_id, short_name = new_id(), f"{uuid.uuid4().hex}.wav"
    recording_api.add(short_name)
    marker_id, marker_name = new_id(), f"{uuid.uuid4().hex}.wav"
    recording_api.add(marker_name)
    before = SKIPPED.labels("too-short")._value.get()
    # Same partition, short call first: once the marker is stored the short one has been handled.
    await pipeline.send(fee_record(short_id, talk=2, object_name=short_name), partition=1)
    await pipeline.send(fee_record(marker_id, object_name=marker_name), partition=1)
    await pipeline.wait_for(marker_id)
    assert recording_api.api_calls[short_name] == 0 and recording_api.started[short_name] == 0
    assert short_id not in pipeline.events
    assert SKIPPED.labels("too-short")._value.get() == before + 1


@pytest.mark.parametrize(("changes", "reason"), [
    ({"serviceType": "001"}, "not-callback"),  # a voice notification: the platform never records one
    ({"recordFlag": "0"}, "no-recording"),
    ({"recordFlag": None}, "no-recording"),
    ({"fwdAnswerTime": ""}, "not-answered"),
])
async def test_skipped_records_are_counted_by_reason_and_never_requested(
        pipeline: Pipeline, recording_api: RecordingApi, changes: dict[str, Any], reason: str) -> None:
    skipped_id, skipped_name = new_id(), f"{uuid.uuid4().hex}.wav"
    recording_api.add(skipped_name)
    marker_id, marker_name = new_id(), f"{uuid.uuid4().hex}.wav"
    recording_api.add(marker_name)
    before = SKIPPED.labels(reason)._value.get()
    await pipeline.send(fee_record(skipped_id, object_name=skipped_name, **changes), partition=1)
    await pipeline.send(fee_record(marker_id, object_name=marker_name), partition=1)
    await pipeline.wait_for(marker_id)
    assert recording_api.api_calls[skipped_name] == 0 and recording_api.started[skipped_name] == 0
    assert skipped_id not in pipeline.events
    assert SKIPPED.labels(reason)._value.get() == before + 1


@pytest.mark.parametrize("object_name", [None, "x.wav"])  # no recordObjectName, or one without recordDomain
async def test_record_file_download_url_is_used_without_record_domain(
        pipeline: Pipeline, recording_api: RecordingApi, object_name: str | None) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    sha = recording_api.add(name, size=300_000)
    fmt = "%Y-%m-%d  %H:%M:%S"  # old platform versions: two spaces between date and time
    record = fee_record(session_id, object_name=object_name, domain="", url=recording_api.file_url(name),
                        recordFlag="1", fwdAnswerTime=(CALL_END - timedelta(seconds=5)).strftime(fmt),
                        callEndTime=CALL_END.strftime(fmt))
    await pipeline.send(record)
    kind, value, _ = only(await pipeline.wait_for(session_id))
    assert (kind, value["sha256"], value["bytes"]) == ("stored", sha, 300_000)
    assert recording_api.api_calls[name] == 0 and recording_api.completed[name] == 1


async def test_503_twice_then_success(sim_pipeline: Pipeline, simulator: SimulatorApi) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(name, 100_000, fail_first=2)
    await sim_pipeline.send(fee_record(session_id, object_name=name))
    kind, value, _ = only(await sim_pipeline.wait_for(session_id))
    assert (kind, value["sha256"], value["attempts"]) == ("stored", simulator.sha256(name), 3)
    assert simulator.attempts[name] == 3 and simulator.download_attempts[name] == 1


async def test_not_found_is_reported_failed(sim_pipeline: Pipeline, simulator: SimulatorApi) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    await sim_pipeline.send(fee_record(session_id, object_name=name))
    kind, value, headers = only(await sim_pipeline.wait_for(session_id))
    assert (kind, value["reason"], value["attempts"]) == ("failed", "not-found", 1)
    assert "1012007" in value["detail"]
    assert headers["ce_type"] == cloudevents.TYPE_RECORDING_FAILED.encode()
    assert simulator.attempts[name] == 1 and simulator.download_attempts[name] == 0


async def test_transient_failures_are_retried_until_the_deadline(sim_pipeline: Pipeline,
                                                                 simulator: SimulatorApi) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(name, 100_000, fail_first=10_000)
    await sim_pipeline.send(fee_record(session_id, object_name=name))
    kind, value, _ = only(await sim_pipeline.wait_for(session_id))
    assert (kind, value["reason"]) == ("failed", "retries-exhausted") and "503" in value["detail"]
    assert value["attempts"] >= 3 and simulator.attempts[name] == value["attempts"]  # a fresh URL every attempt
    assert simulator.download_attempts[name] == 0


async def test_a_call_past_the_platforms_retention_is_not_retried(sim_pipeline: Pipeline,
                                                                   simulator: SimulatorApi) -> None:
    """The platform deletes recordings 7 days after the call: a transient failure then ends the recording."""
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(name, 100_000, fail_first=10_000)
    ended = CALL_END - timedelta(days=8)
    fmt = "%Y-%m-%d %H:%M:%S"
    await sim_pipeline.send(fee_record(session_id, object_name=name, callEndTime=ended.strftime(fmt),
                                       fwdAnswerTime=(ended - timedelta(seconds=30)).strftime(fmt)))
    kind, value, _ = only(await sim_pipeline.wait_for(session_id))
    assert (kind, value["reason"], value["attempts"]) == ("failed", "retries-exhausted", 1)
    assert simulator.attempts[name] == 1


async def test_bad_credentials_and_oversized_files_are_reported_failed(kafka_bootstrap: str, simulator: SimulatorApi,
                                                                       tmp_path: Path) -> None:
    """Permanent failures are not retried: an AK/SK the platform rejects, a file over the size limit."""
    wrong_secret = "wrong-secret-never-logged"
    root = tmp_path / "store"
    settings = simulator_settings(kafka_bootstrap, simulator, root.as_uri(), huawei_app_secret=wrong_secret,
                                  recordings_max_bytes=100_000)
    auth_id, auth_name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(auth_name, 50_000, domain="rec.test")
    big_id, big_name = new_id(), f"{uuid.uuid4().hex}.wav"
    big_url = simulator.add_file(big_name, 300_000)
    rejected = simulator.answers["400 1023006"]
    async with running_pipeline(settings) as running:
        await running.send(fee_record(auth_id, object_name=auth_name))
        await running.send(fee_record(big_id, object_name=None, url=big_url))
        auth_kind, auth, _ = only(await running.wait_for(auth_id))
        big_kind, big, _ = only(await running.wait_for(big_id))
    assert (auth_kind, auth["reason"], auth["attempts"]) == ("failed", "auth", 1) and "1023006" in auth["detail"]
    assert simulator.answers["400 1023006"] == rejected + 1 and simulator.download_attempts[auth_name] == 0
    assert (big_kind, big["reason"], big["attempts"]) == ("failed", "too-large", 1)
    assert [p for p in root.rglob("*") if p.is_file()] == []  # nothing under a key, no temp file left
    assert wrong_secret not in orjson.dumps([auth, big]).decode()


class FlakyFileStore(FileStore):
    """A real file store whose existence check fails the first ``failures`` times (a store outage)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.checks: list[float] = []

    async def existing(self, key: str) -> Stored | None:
        self.checks.append(time.monotonic())
        if len(self.checks) <= self.failures:
            raise OSError("store unavailable")
        return await super().existing(key)


async def test_store_outage_backs_off_exponentially_then_stores(kafka_bootstrap: str, recording_api: RecordingApi,
                                                                tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, recording_api.base_url, (tmp_path / "unused").as_uri(),
                             recordings_retry_initial="0.4s", recordings_retry_max="10s")
    store = FlakyFileStore(tmp_path / "store", failures=4)
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    sha = recording_api.add(name)
    try:
        async with running_pipeline(settings, store) as running:
            await running.send(fee_record(session_id, object_name=name))
            kind, value, _ = only(await running.wait_for(session_id))
    finally:
        await store.close()
    assert (kind, value["sha256"], value["attempts"]) == ("stored", sha, 1)
    gaps = [b - a for a, b in itertools.pairwise(store.checks)]
    # Jittered between half and all of 0.4 s · 2^(n-1): 0.2-0.4, 0.4-0.8, 0.8-1.6, 1.6-3.2 s.
    assert len(gaps) == 4 and gaps[0] < 1.0 and gaps[2] >= 0.8 and gaps[3] >= 1.6, gaps


async def test_unreadable_fee_record_goes_to_deadletter(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    await pipeline.producer.send_and_wait(topics.name(settings, "fee.unique"), b"\xff not json", key=b"k-bad",
                                          partition=2)
    reader = make_consumer(settings, topics.name(settings, "deadletter"), group_id=None)
    await reader.start()
    try:
        record = None
        deadline = asyncio.get_running_loop().time() + 30
        while record is None and asyncio.get_running_loop().time() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                record = records[0]
    finally:
        await reader.stop()
    assert record is not None, "nothing on deadletter"
    value = orjson.loads(record.value)
    assert value["stage"] == "recordings" and value["reason"] == "not-json"
    assert value["detail"].startswith("not JSON")
    assert value["origin"]["topic"] == topics.name(settings, "fee.unique") and value["origin"]["partition"] == 2
    assert value["encoding"] == "base64" and record.key == b"k-bad"
    assert dict(record.headers)["ce_type"] == cloudevents.TYPE_DEADLETTER.encode()


@pytest.mark.parametrize(("target", "reason"), [
    ("metadata", "forbidden-host"),
    ("loopback-ip", "forbidden-host"),
    ("redirect", "forbidden-redirect"),
])
async def test_unsafe_download_urls_are_never_fetched(pipeline: Pipeline, recording_api: RecordingApi,
                                                      target: str, reason: str) -> None:
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    recording_api.add(name)
    url = {"metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
           "loopback-ip": recording_api.file_url(name, host="127.0.0.1"),  # only "localhost" is allowed
           "redirect": recording_api.bounce_url(name)}[target]
    await pipeline.send(fee_record(session_id, object_name=name, domain=None, url=url))
    kind, value, _ = only(await pipeline.wait_for(session_id))
    assert (kind, value["reason"]) == ("failed", reason)
    assert recording_api.started[name] == 0 and recording_api.api_calls[name] == 0


async def test_traversal_in_record_object_name_stays_inside_the_store(pipeline: Pipeline,
                                                                      recording_api: RecordingApi,
                                                                      store_root: Path) -> None:
    session_id = "../../" + new_id()
    sha = recording_api.add("../../x.wav")
    await pipeline.send(fee_record(session_id, object_name="../../x.wav"))
    kind, value, _ = only(await pipeline.wait_for(session_id))
    assert kind == "stored" and value["recordObjectName"] == "../../x.wav" and value["sha256"] == sha
    path = Path(value["uri"].removeprefix("file://"))
    assert inside(path, store_root) and path.name.endswith(".wav")
    assert not await asyncio.to_thread(lambda: (store_root.parent.parent / "x.wav").exists())


async def test_offsets_committed_once_everything_finished(pipeline: Pipeline) -> None:
    """Runs after the others in this module: every record is finished, so the group is at the log end."""
    settings = pipeline.settings
    consumer = make_consumer(settings, group_id=group_id(settings, "recordings"))
    await consumer.start()
    try:
        tps = [TopicPartition(topics.name(settings, "fee.unique"), p) for p in range(3)]
        ends = await consumer.end_offsets(tps)
        for _ in range(50):
            committed = {tp: await consumer.committed(tp) for tp in tps}
            if all((committed[tp] or 0) == ends[tp] for tp in tps):
                break
            await asyncio.sleep(0.2)
        assert {tp: committed[tp] or 0 for tp in tps} == ends
    finally:
        await consumer.stop()


async def test_happy_path_to_s3(kafka_bootstrap: str, simulator: SimulatorApi, s3_server: S3Server) -> None:
    prefix = uuid.uuid4().hex
    settings = simulator_settings(kafka_bootstrap, simulator, f"s3://{s3_server.bucket}/{prefix}",
                                  recordings_s3_endpoint_url=s3_server.endpoint, recordings_s3_part_size="5MiB")
    session_id, name = new_id(), f"{uuid.uuid4().hex}.wav"
    simulator.add_file(name, 6 * 1024 * 1024 + 3)  # two parts: a real multipart upload
    sha = simulator.sha256(name)
    async with running_pipeline(settings) as running:
        await running.send(fee_record(session_id, object_name=name))
        kind, value, _ = only(await running.wait_for(session_id))
    assert kind == "stored" and value["sha256"] == sha and value["bytes"] == 6 * 1024 * 1024 + 3
    assert value["uri"].startswith(f"s3://{s3_server.bucket}/{prefix}/{CALL_END:%Y/%m/%d}/")
    store = await open_store(f"s3://{s3_server.bucket}/{prefix}", s3_endpoint_url=s3_server.endpoint)
    try:
        key = value["uri"].removeprefix(f"s3://{s3_server.bucket}/")
        body = await store.client.get_object(Bucket=s3_server.bucket, Key=key)  # type: ignore[attr-defined]
        async with body["Body"] as stream:
            assert hashlib.sha256(await stream.read()).hexdigest() == sha
    finally:
        await store.close()


async def test_rebalance_hands_unfinished_downloads_to_the_new_owner(kafka_bootstrap: str,
                                                                     recording_api: RecordingApi,
                                                                     tmp_path: Path) -> None:
    """A second worker joins while slow downloads run: revoked partitions' downloads are cancelled and not
    committed past; the new owner completes them; every file is stored once with the right bytes."""
    settings = make_settings(kafka_bootstrap, recording_api.base_url, (tmp_path / "store").as_uri())
    calls = [(new_id(), f"{uuid.uuid4().hex}.wav") for _ in range(3)]
    # ~7 s per transfer: longer than a rebalance takes (the old member notices at its next heartbeat, ≤ 3 s).
    shas = {name: recording_api.add(name, size=3_000_000, chunk_delay=0.15) for _, name in calls}
    async with running_pipeline(settings) as running:
        for partition, (session_id, name) in enumerate(calls):
            await running.send(fee_record(session_id, object_name=name), partition=partition)
        await until_started(recording_api, [name for _, name in calls])
        second_stop = asyncio.Event()
        second = asyncio.create_task(serve(settings, second_stop))
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not any(recording_api.started[name] == 2 for _, name in calls):  # a download changed hands
                assert asyncio.get_running_loop().time() < deadline, dict(recording_api.started)
                await asyncio.sleep(0.05)
            for _, name in calls:
                recording_api.chunk_delay[name] = 0.0
            for session_id, _ in calls:
                await running.wait_for(session_id, timeout=60)
            for session_id, name in calls:
                kind, value, _ = only(running.events[session_id])
                assert kind == "stored" and value["sha256"] == shas[name]
                assert recording_api.completed[name] == 1  # a cancelled transfer never completes
        finally:
            second_stop.set()
            await asyncio.wait_for(second, timeout=30)


async def test_a_slow_download_does_not_hold_up_its_partition(kafka_bootstrap: str, recording_api: RecordingApi,
                                                               tmp_path: Path) -> None:
    """Records behind a slow download on the same partition finish first; the committed offset stays at the slow
    record until it is done, then moves to the end."""
    settings = make_settings(kafka_bootstrap, recording_api.base_url, (tmp_path / "store").as_uri())
    fee_topic = topics.name(settings, "fee.unique")
    slow_id, slow_name = new_id(), f"{uuid.uuid4().hex}.wav"
    slow_sha = recording_api.add(slow_name, size=2_000_000, chunk_delay=0.5)  # ~15 s unless sped up
    fast = [(new_id(), f"{uuid.uuid4().hex}.wav") for _ in range(2)]
    for _, name in fast:
        recording_api.add(name)
    async with running_pipeline(settings) as running:
        slow = orjson.dumps(fee_record(slow_id, object_name=slow_name))
        sent = await running.producer.send_and_wait(fee_topic, slow, key=slow_id.encode(), partition=0)
        for session_id, name in fast:
            await running.send(fee_record(session_id, object_name=name), partition=0)
        await running.send(fee_record(new_id(), recordFlag=0), partition=0)  # a skip, finished at once
        for session_id, _ in fast:
            await running.wait_for(session_id)
        assert recording_api.completed[slow_name] == 0 and slow_id not in running.events
        tp = TopicPartition(fee_topic, 0)
        checker = make_consumer(settings, group_id=group_id(settings, "recordings"))
        await checker.start()
        try:
            await asyncio.sleep(5 * settings.recordings_commit_interval)  # several commit rounds after the others
            assert await checker.committed(tp) == sent.offset  # not past the unfinished record
            end = (await checker.end_offsets([tp]))[tp]
            recording_api.chunk_delay[slow_name] = 0.0
            kind, value, _ = only(await running.wait_for(slow_id))
            assert (kind, value["sha256"]) == ("stored", slow_sha)
            for _ in range(50):
                if await checker.committed(tp) == end:
                    break
                await asyncio.sleep(0.2)
            assert await checker.committed(tp) == end
        finally:
            await checker.stop()


async def test_downloads_are_bounded_by_the_concurrency_setting(kafka_bootstrap: str, recording_api: RecordingApi,
                                                                tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, recording_api.base_url, (tmp_path / "store").as_uri(),
                             recordings_concurrency=2)
    calls = [(new_id(), f"{uuid.uuid4().hex}.wav") for _ in range(6)]
    shas = {name: recording_api.add(name, size=400_000, chunk_delay=0.1) for _, name in calls}
    async with running_pipeline(settings) as running:
        for index, (session_id, name) in enumerate(calls):
            await running.send(fee_record(session_id, object_name=name), partition=index % 3)
        for session_id, name in calls:
            kind, value, _ = only(await running.wait_for(session_id, timeout=60))
            assert (kind, value["sha256"]) == ("stored", shas[name])
    assert recording_api.peak_transfers({name for _, name in calls}) == 2


def test_default_concurrency_and_size_limit() -> None:
    from voicecall.recordings.config import RecordingsSettings
    from voicecall.runtime import config

    settings = config.load(RecordingsSettings)
    assert settings.recordings_concurrency == 16 and settings.recordings_max_bytes == 200_000_000


async def until_started(api: RecordingApi, names: list[str], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(api.bytes_sent[name] > 0 for name in names):
        assert asyncio.get_running_loop().time() < deadline, "downloads did not start"
        await asyncio.sleep(0.05)


async def test_full_worker_pauses_and_resumes_without_losing_records(kafka_bootstrap: str,
                                                                     recording_api: RecordingApi,
                                                                     tmp_path: Path) -> None:
    """With room for one record in flight the worker pauses its partitions between records; none is lost."""
    settings = make_settings(kafka_bootstrap, recording_api.base_url, (tmp_path / "store").as_uri(),
                             recordings_max_pending=1)
    calls = [(new_id(), f"{uuid.uuid4().hex}.wav") for _ in range(5)]
    shas = {name: recording_api.add(name, size=200_000, chunk_delay=0.02) for _, name in calls}
    async with running_pipeline(settings) as running:
        for session_id, name in calls:
            await running.send(fee_record(session_id, object_name=name), partition=0)
        for session_id, name in calls:
            kind, value, _ = only(await running.wait_for(session_id))
            assert kind == "stored" and value["sha256"] == shas[name]
    assert all(recording_api.completed[name] == 1 for _, name in calls)


def test_metrics_are_exposed_for_prometheus() -> None:
    """Runs after the pipelines above in this module: outcomes, bytes, latency and skips were counted."""
    from prometheus_client import REGISTRY, generate_latest

    from voicecall.recordings.metrics import BYTES, DOWNLOADS

    text = generate_latest(REGISTRY).decode()
    for name in ("voicecall_recordings_downloads_total", "voicecall_recordings_bytes_total",
                 "voicecall_recordings_download_seconds_bucket", "voicecall_recordings_in_flight",
                 "voicecall_recordings_retry_backlog", "voicecall_recordings_skipped_total",
                 "voicecall_recordings_failed_total"):
        assert name in text, name
    assert DOWNLOADS.labels("stored")._value.get() >= 1 and DOWNLOADS.labels("retry")._value.get() >= 2
    assert BYTES._value.get() >= 700_000
    assert 'voicecall_recordings_skipped_total{reason="no-recording"}' in text
