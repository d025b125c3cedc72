"""The README's examples work as written: every file in examples/ posted to a running ingress gets the answer the
README's table promises, the curl line `make run` prints works as printed, and the README's end-to-end walk
(push → `voicecall tail billing`) shows the billing record it describes."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from kafka_helpers import new_prefix
from voicecall import topics
from voicecall.devenv.banner import next_steps
from voicecall.devenv.broker import BrokerHandle
from voicecall.devenv.plan import DevSettings
from voicecall.runtime import config
from voicecall.runtime.children import Child

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(examples/[^`]+)` \| [^|]+ \| `(\d{3})` `(\{[^`]+\})`", re.MULTILINE)
CALLBACK_SID = "1201_612_4294967295_20261123100004@callenabler245.huaweicaas.com"


def promised() -> dict[str, tuple[int, dict[str, str]]]:
    """The README's table: example file → (status, body)."""
    rows = ROW.findall((ROOT / "README.md").read_text())
    return {path: (int(status), orjson.loads(body)) for path, status, body in rows}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), orjson.loads(error.read())


class Pipeline:
    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.prefix = new_prefix()
        self.port = free_port()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("VOICECALL_")}
        self.env.update(VOICECALL_KAFKA_BOOTSTRAP=bootstrap, VOICECALL_TOPIC_PREFIX=self.prefix,
                        VOICECALL_LOG_FORMAT="json", VOICECALL_INGRESS_HOST="127.0.0.1",
                        VOICECALL_INGRESS_PORT=str(self.port), VOICECALL_INGRESS_SPOOL_DIR=str(tmp / "spool"),
                        VOICECALL_METRICS_HOST="127.0.0.1", VOICECALL_METRICS_PORT="0")
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *services: str) -> None:
        for service in services:
            log = (self.tmp / f"{service}.log").open("wb")
            self.processes.append(subprocess.Popen([sys.executable, "-m", "voicecall", service], env=self.env,
                                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def wait_for_ingress(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError((self.tmp / "ingress.log").read_text())

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            assert process.wait(timeout=60) == 0


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(kafka_bootstrap, tmp_path)
    settings = config.load(topics.TopicSettings, kafka_bootstrap=kafka_bootstrap, topic_prefix=running.prefix,
                           topic_partitions=2, topic_replication=1, topic_min_insync=1)
    asyncio.run(topics.create(settings))
    try:
        yield running
    finally:
        for process in running.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_readme_promises_an_answer_for_every_example() -> None:
    files = {f"examples/{path.name}" for path in (ROOT / "examples").glob("*.json")}
    assert files and set(promised()) == files
    assert {status for status, _ in promised().values()} == {200, 400}


def test_every_example_gets_the_answer_the_readme_promises_and_the_walk_shows_billing(pipeline: Pipeline) -> None:
    pipeline.start("ingress", "dedup", "billing")
    pipeline.wait_for_ingress()
    for path, answer in sorted(promised().items()):
        assert post(f"http://127.0.0.1:{pipeline.port}/notify", (ROOT / path).read_bytes()) == answer, path

    # the walk: `voicecall tail billing --from-beginning --max 1 --key <sessionId>`, as the README writes it
    walk = (ROOT / "README.md").read_text().split("### A push, end to end", 1)[1].split("```sh", 1)[1]
    tail_argv = shlex.split(walk.split("```", 1)[0].split(".venv/bin/voicecall", 1)[1].replace("\\\n", " "))
    assert tail_argv[:2] == ["tail", "billing"] and CALLBACK_SID in tail_argv
    tail = subprocess.run([sys.executable, "-m", "voicecall", *tail_argv, "--timeout", "60"], env=pipeline.env,
                          capture_output=True, timeout=120)
    lines = tail.stdout.splitlines()
    assert tail.returncode == 0 and len(lines) == 1, (tail.stdout, tail.stderr)
    record = orjson.loads(lines[0])["value"]
    legs = {leg["leg"]: (leg["seconds"], leg["billedMinutes"]) for leg in record["legs"]}
    assert legs == {"A": (158, 3), "B": (150, 3)}  # what the README says the record shows
    assert record["totalBilledMinutes"] == 6 and record["amount"] == 108

    dead = subprocess.run([sys.executable, "-m", "voicecall", "tail", "deadletter", "--from-beginning", "--max", "1",
                           "--timeout", "30"], env=pipeline.env, capture_output=True, timeout=60)
    assert orjson.loads(dead.stdout)["value"]["payload"] == orjson.loads((ROOT / "examples/bad-body.json").read_bytes())
    pipeline.stop()


def test_the_curl_line_make_run_prints_works_as_printed(pipeline: Pipeline) -> None:
    pipeline.start("ingress")
    pipeline.wait_for_ingress()
    settings = DevSettings(ingress_host="127.0.0.1", ingress_port=pipeline.port,
                           kafka_bootstrap=pipeline.env["VOICECALL_KAFKA_BOOTSTRAP"])
    banner = next_steps(settings, [Child("ingress", [], env={})], pipeline.tmp, BrokerHandle(
        kind="external", bootstrap=settings.kafka_bootstrap, relaunch=None), None, name_bootstrap=False)
    line = next(line for line in banner.splitlines() if "curl" in line)
    command = line.split("pushes:", 1)[1].strip()
    result = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == 0, (command, result.stderr)
    assert orjson.loads(result.stdout) == {"resultcode": "0", "resultdesc": "Success"}, command
    pipeline.stop()
