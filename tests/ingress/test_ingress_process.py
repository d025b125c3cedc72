"""``voicecall ingress`` as a real process: SIGTERM under load, schemathesis against the live ingress, and
``--workers 2`` behind one supervisor."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from ingress_helpers import fee_push, ingress_settings, wait_ready

from kafka_helpers import create_topics, read_all
from voicecall.devenv.ports import free_port
from voicecall.ingress.config import IngressSettings
from voicecall.runtime.children import Child

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    settings: IngressSettings
    log: Path


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def process_settings(kafka_bootstrap: str, tmp_path: Path) -> tuple[IngressSettings, dict[str, str]]:
    """Settings on a free port with their topics, and the environment that gives them to a process."""
    port = free_port()
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_port=port)
    await create_topics(settings)
    env = dict(os.environ, VOICECALL_KAFKA_BOOTSTRAP=kafka_bootstrap, VOICECALL_TOPIC_PREFIX=settings.topic_prefix,
               VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_PORT=str(port),
               VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"), VOICECALL_LOG_FORMAT="json")
    return settings, env


@pytest.fixture
async def process(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Process]:
    settings, env = await process_settings(kafka_bootstrap, tmp_path)
    port = settings.ingress_port
    log = tmp_path / "ingress.log"
    proc = spawn([sys.executable, "-m", "voicecall", "ingress"], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, timeout=70)
        yield Process(proc, url, settings, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_under_load_answers_in_flight_and_loses_nothing(process: Process) -> None:
    accepted: set[str] = set()
    statuses: list[int] = []
    failures: list[str] = []
    terminated = asyncio.Event()

    async def client(n: int) -> None:
        async with aiohttp.ClientSession() as session:
            for i in range(100_000):
                push = fee_push(2, tag=f"c{n}-{i}-")
                try:
                    async with session.post(f"{process.url}/notify/fee", data=orjson.dumps(push)) as response:
                        await response.read()
                        statuses.append(response.status)
                        if response.status == 200:
                            accepted.update(f["sessionId"] for f in push["feeLst"])
                except aiohttp.ClientError as error:
                    # Only once the process is going away: a closed listener or a closed keep-alive connection.
                    failures.append(f"{terminated.is_set()} {type(error).__name__}")
                    return

    load = [asyncio.create_task(client(n)) for n in range(8)]
    await asyncio.sleep(2.0)
    in_flight_before = len(statuses)
    process.proc.send_signal(signal.SIGTERM)
    terminated.set()
    code = await asyncio.to_thread(process.proc.wait, 60)
    await asyncio.gather(*load)
    log = process.log.read_text()
    assert code == 0, log[-3000:]
    assert in_flight_before > 50
    assert statuses and all(s == 200 for s in statuses), {s: statuses.count(s) for s in set(statuses)}
    assert all(f.startswith("True") for f in failures), failures
    assert "Traceback" not in log and "stopped cleanly" in log
    records = await read_all(process.settings, "fee.raw", expect=len(accepted), timeout=30, idle=0)
    assert {r.key.decode() for r in records} >= accepted


async def test_schemathesis_finds_no_server_error(process: Process) -> None:
    schema = schemathesis.openapi.from_path(str(SCHEMA))
    schema.config.update(base_url=process.url)
    problems: list[str] = []
    cases = 0

    seen: dict[int, int] = {}
    for operation, mode in itertools.product(schema.get_all_operations(), schemathesis.GenerationMode):
        op = operation.ok()
        if op.method.upper() != "POST":
            continue
        # Positive cases are valid pushes (200); negative ones break the schema (400 expected, never 5xx).
        strategy = op.as_strategy(generation_mode=mode)

        @hypothesis_settings(max_examples=60, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            response = case.call(timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500 or response.status_code not in (200, 400, 413):
                problems.append(f"{case.method} {case.path}: {response.status_code} {response.text[:200]}")
            if response.status_code == 200:
                assert response.json() == {"resultcode": "0", "resultdesc": "Success"}

        from hypothesis import given

        await asyncio.to_thread(given(strategy)(check))
    assert cases >= 300, cases
    assert seen.get(200, 0) > 50 and seen.get(400, 0) > 50, seen
    assert not problems, problems[:10]
    log = process.log.read_text()
    assert "Traceback" not in log and '"level":"error"' not in log.replace(" ", ""), log[-3000:]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


async def test_workers_share_the_port_and_stop_cleanly_on_one_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    # one SIGTERM to the parent reaches each worker once through the supervisor (runtime/children.py)
    settings, env = await process_settings(kafka_bootstrap, tmp_path)
    port = settings.ingress_port
    log = tmp_path / "ingress.log"
    parent = Child("ingress", [sys.executable, "-m", "voicecall", "ingress", "--workers", "2"], env, log)
    parent.start()
    assert parent.pid is not None
    url = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        for _ in range(150):
            workers = children_of(parent.pid)
            try:
                await wait_ready(url, timeout=0.5)
                if len(workers) == 2 and log.read_text().count("ingress listening") == 2:
                    break
            except AssertionError:  # not ready yet
                pass
            await asyncio.sleep(0.2)
        assert len(workers) == 2 and log.read_text().count("ingress listening") == 2, log.read_text()[-3000:]
        accepted = set()
        async with aiohttp.ClientSession() as session:
            for i in range(20):  # new connections: SO_REUSEPORT spreads them over both workers
                push = fee_push(1, tag=f"w{i}-")
                async with session.post(f"{url}/notify/fee", data=orjson.dumps(push),
                                        headers={"Connection": "close"}) as response:
                    assert response.status == 200
                accepted.update(f["sessionId"] for f in push["feeLst"])
    finally:
        os.kill(parent.pid, signal.SIGTERM)  # the parent alone, as Kubernetes signals the container's process
        assert parent.process is not None
        code = await asyncio.to_thread(parent.process.wait, 90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert set(workers).isdisjoint(map(int, filter(str.isdigit, os.listdir("/proc"))))  # exited and reaped
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line.get("event") == "stopped cleanly"]
    assert len(stopped) == 3, text[-3000:]  # both workers and the parent
    assert not any(line.get("event") == "second signal, exiting now" for line in lines), text[-3000:]
    served = {line.get("pid") for line in lines if line.get("event") == "ingress listening"}
    assert served == set(workers)
    records = await read_all(settings, "fee.raw", expect=len(accepted), timeout=30, idle=0)
    assert {r.key.decode() for r in records} >= accepted


async def test_the_real_process_cuts_off_slow_headers_and_answers_errors_as_json(kafka_bootstrap: str,
                                                                                 tmp_path: Path) -> None:
    """The CLI serves on uvloop, whose transports are not asyncio's: the 408 and the JSON errors must still come."""
    from test_ingress_http_contract import contract_json, raw_request
    from test_ingress_slowloris import slow_client, timeout_answer

    settings, env = await process_settings(kafka_bootstrap, tmp_path)
    env["VOICECALL_INGRESS_HEADER_TIMEOUT"] = "1s"
    proc = spawn([sys.executable, "-m", "voicecall", "ingress"], env, tmp_path / "ingress.log")
    url = f"http://127.0.0.1:{settings.ingress_port}"
    try:
        await wait_ready(url, timeout=70)
        held, answer, _ = await slow_client(url, b"POST /notify/status HTTP/1.1\r\nHost: x\r\n" * 4, 0.1, 10.0)
        assert 0.9 <= held <= 3.0, held
        assert timeout_answer(answer)["resultdesc"] == "request headers not received in time"
        for request, code in ((b"GARBAGE\r\n\r\n", 400), (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404)):
            status, headers, body = await raw_request(url, request)
            assert status == code
            contract_json(status, headers, body)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
