"""`voicecall recordings` killed (SIGKILL) mid-download: after a restart the file is completed exactly once, and no
partial file is ever visible under its key."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import time
import uuid
from pathlib import Path

from recordings_helpers import APP_KEY, APP_SECRET, RecordingApi, S3Server, fee_record, running_pipeline

from kafka_helpers import new_prefix, service_env
from voicecall.recordings import select
from voicecall.recordings.config import RecordingsSettings
from voicecall.runtime import config


def env_for(settings: RecordingsSettings) -> dict[str, str]:
    s3 = {"VOICECALL_RECORDINGS_S3_ENDPOINT_URL": settings.recordings_s3_endpoint_url
          } if settings.recordings_s3_endpoint_url else {}
    return service_env(settings, **s3, **{
        "VOICECALL_HUAWEI_BASE_URL": settings.huawei_base_url, "VOICECALL_HUAWEI_APP_KEY": APP_KEY,
        "VOICECALL_HUAWEI_APP_SECRET": APP_SECRET, "VOICECALL_RECORDINGS_STORE": settings.recordings_store,
        "VOICECALL_RECORDINGS_ALLOWED_HOSTS": "localhost", "VOICECALL_RECORDINGS_RETRY_INITIAL": "0.2s",
        "VOICECALL_RECORDINGS_COMMIT_INTERVAL": "0.2s",
    })


async def start(settings: RecordingsSettings, log: Path) -> asyncio.subprocess.Process:
    handle = await asyncio.to_thread(open, log, "ab")
    try:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "recordings",
                                                    env=env_for(settings), stdout=handle, stderr=handle,
                                                    stdin=asyncio.subprocess.DEVNULL)
    finally:
        handle.close()


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts)


async def test_killed_mid_download_completes_once_after_restart(kafka_bootstrap: str, recording_api: RecordingApi,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "store"
    settings = config.load(RecordingsSettings, kafka_bootstrap=kafka_bootstrap,
                           topic_prefix=new_prefix(), huawei_base_url=recording_api.base_url,
                           recordings_store=root.as_uri())
    session_id, name = f"kill-{uuid.uuid4().hex[:8]}@callenabler245.huaweicaas.com", f"{uuid.uuid4().hex}.wav"
    size = 4 * 1024 * 1024
    sha = recording_api.add(name, size=size, chunk_delay=0.05)  # ~3 s transfer
    record = fee_record(session_id, object_name=name)
    decision = select.decide(record)
    assert isinstance(decision, select.Fetch)
    final = root / decision.key
    log = tmp_path / "recordings.log"

    async with running_pipeline(settings, worker=False) as pipeline:
        first = await start(settings, log)
        try:
            await pipeline.send(record)
            await until(lambda: recording_api.bytes_sent[name] >= 512 * 1024, 120, "the download to start")
        finally:
            if first.returncode is None:
                first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL, (await asyncio.to_thread(log.read_text))[-3000:]
        assert recording_api.completed[name] == 0
        assert not await asyncio.to_thread(final.exists)
        assert await asyncio.to_thread(visible_files, root) == []  # the partial bytes exist only in .tmp

        recording_api.chunk_delay[name] = 0.0
        await pipeline.send(record)  # the platform's re-push of the same call, waiting behind the first
        second = await start(settings, log)
        try:
            events = await pipeline.wait_for(session_id, count=2, timeout=90)
        finally:
            if second.returncode is None:
                second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), timeout=30)
        assert code == 0, (await asyncio.to_thread(log.read_text))[-3000:]

    assert [kind for kind, _, _ in events] == ["stored", "stored"]
    assert {value["sha256"] for _, value, _ in events} == {sha}
    assert recording_api.started[name] == 2 and recording_api.completed[name] == 1  # killed one + one complete
    assert await asyncio.to_thread(visible_files, root) == [final, final.with_name(final.name + ".json")]
    assert hashlib.sha256(await asyncio.to_thread(final.read_bytes)).hexdigest() == sha
    assert await asyncio.to_thread(lambda: list((root / ".tmp").iterdir())) == []  # the dead process's part
    assert APP_SECRET not in await asyncio.to_thread(log.read_text)


async def test_killed_mid_multipart_upload_completes_once_in_s3(kafka_bootstrap: str, recording_api: RecordingApi,
                                                                s3_server: S3Server, tmp_path: Path) -> None:
    from voicecall.recordings.store import S3Store, open_store

    prefix = uuid.uuid4().hex
    settings = config.load(RecordingsSettings, kafka_bootstrap=kafka_bootstrap,
                           topic_prefix=new_prefix(), huawei_base_url=recording_api.base_url,
                           recordings_store=f"s3://{s3_server.bucket}/{prefix}",
                           recordings_s3_endpoint_url=s3_server.endpoint)
    session_id, name = f"kill-{uuid.uuid4().hex[:8]}@callenabler245.huaweicaas.com", f"{uuid.uuid4().hex}.wav"
    size = 12 * 1024 * 1024  # three 5 MiB parts: killed after the first is uploaded
    sha = recording_api.add(name, size=size, chunk_delay=0.05)
    record = fee_record(session_id, object_name=name)
    decision = select.decide(record)
    assert isinstance(decision, select.Fetch)
    key = f"{prefix}/{decision.key}"
    log = tmp_path / "recordings.log"
    store = await open_store(settings.recordings_store, s3_endpoint_url=s3_server.endpoint)
    assert isinstance(store, S3Store)

    async def visible() -> list[str]:
        listing = await store.client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    try:
        async with running_pipeline(settings, worker=False) as pipeline:
            first = await start(settings, log)
            try:
                await pipeline.send(record)
                await until(lambda: recording_api.bytes_sent[name] >= 6 * 1024 * 1024, 120, "a part to be uploaded")
                await asyncio.sleep(0.5)
            finally:
                if first.returncode is None:
                    first.send_signal(signal.SIGKILL)
                await first.wait()
            assert first.returncode == -signal.SIGKILL, (await asyncio.to_thread(log.read_text))[-3000:]
            assert recording_api.completed[name] == 0 and await visible() == []  # the started upload is invisible
            uploads = await store.client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix)
            assert [u["Key"] for u in uploads.get("Uploads", [])] == [key]  # it was killed mid-multipart

            recording_api.chunk_delay[name] = 0.0
            second = await start(settings, log)
            try:
                kind, value, _ = (await pipeline.wait_for(session_id, timeout=90))[0]
            finally:
                if second.returncode is None:
                    second.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(second.wait(), timeout=30)
            assert code == 0, (await asyncio.to_thread(log.read_text))[-3000:]
        assert (kind, value["sha256"], value["bytes"]) == ("stored", sha, size)
        assert recording_api.started[name] == 2 and recording_api.completed[name] == 1
        assert await visible() == [key, key + ".json"]
        body = await store.client.get_object(Bucket=s3_server.bucket, Key=key)
        async with body["Body"] as stream:
            assert hashlib.sha256(await stream.read()).hexdigest() == sha
    finally:
        await store.close()
