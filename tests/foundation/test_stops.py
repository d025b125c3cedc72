"""A stop always works: every long-running command whose stderr is gone — its reader ended (``2>&1 | tee f`` and
then ``tee`` ends) or it was started with stderr closed (``2>&-``) — stops on SIGTERM and exits 0. The first thing
such a command writes after the signal is its "stopping" line: that write must not keep it from stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kafka_helpers import new_prefix
from process_helpers import free_port_run
from voicecall import topics
from voicecall.devenv import plan
from voicecall.devenv.ports import free_port
from voicecall.runtime import config


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


Ready = Callable[[], bool]


def command(name: str, bootstrap: str, prefix: str, tmp: Path) -> tuple[list[str], dict[str, str], Ready]:
    """argv, environment and a readiness check for one long-running command."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("VOICECALL_")}
    env.update(VOICECALL_KAFKA_BOOTSTRAP=bootstrap, VOICECALL_TOPIC_PREFIX=prefix, VOICECALL_LOG_FORMAT="json",
               VOICECALL_METRICS_HOST="127.0.0.1", VOICECALL_METRICS_PORT=str(port),
               VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_PORT=str(port),
               VOICECALL_INGRESS_SPOOL_DIR=str(tmp / "spool"),
               VOICECALL_RECORDINGS_STORE=(tmp / "store").as_uri())
    started = time.monotonic()
    if name in ("ingress", "dedup", "billing", "recordings"):
        return [name], env, lambda: healthy(port)
    if name == "tail":
        return ["tail", "billing"], env, lambda: time.monotonic() - started > 4  # no port: give it time to start
    if name == "simulate":
        return (["simulate", "--notify-url", f"http://127.0.0.1:{free_port()}/notify", "--rate", "1",
                 "--serve-recordings", f"127.0.0.1:{port}"], env, lambda: listening(port))
    if name == "broker":
        env["VOICECALL_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
        return ["broker", "--broker", "noida", "--state-dir", str(tmp / "state")], env, lambda: listening(port)
    assert name == "dev"
    env["VOICECALL_METRICS_PORT"] = str(free_port_run(len(plan.CONSUMERS)))  # dev's consumers: this port and on
    return (["dev", "--broker", "external", "--state-dir", str(tmp / "state"), "--partitions", "1"], env,
            lambda: healthy(port))


def said(tmp_path: Path) -> str:
    return (tmp_path / "stdout").read_text(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def prefix(kafka_bootstrap: str) -> str:
    """A prefix whose topics exist (tail refuses a topic that does not)."""
    import asyncio

    name = new_prefix()
    settings = config.load(topics.TopicSettings, kafka_bootstrap=kafka_bootstrap, topic_prefix=name,
                           topic_partitions=1, topic_replication=1, topic_min_insync=1)
    asyncio.run(topics.create(settings))
    return name


@pytest.mark.parametrize("stderr", ["broken", "closed"])
@pytest.mark.parametrize("name", ["ingress", "dedup", "billing", "recordings", "tail", "simulate", "broker", "dev"])
def test_stops_on_sigterm_without_a_stderr(name: str, stderr: str, kafka_bootstrap: str, prefix: str,
                                           tmp_path: Path) -> None:
    argv, env, ready = command(name, kafka_bootstrap, prefix, tmp_path)
    cmd = [sys.executable, "-m", "voicecall", *argv]
    out = (tmp_path / "stdout").open("wb")
    if stderr == "closed":  # as a shell's `2>&-` starts it: no descriptor 2 at all
        process = subprocess.Popen(["sh", "-c", 'exec "$@" 2>&-', "sh", *cmd], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out)
    else:  # the reader of its stderr has gone before it writes a line
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
        assert process.stderr is not None
        process.stderr.close()
    try:
        deadline = time.monotonic() + 90
        while not ready():
            assert process.poll() is None, f"{name} exited {process.returncode} before it was ready: {said(tmp_path)}"
            assert time.monotonic() < deadline, f"{name} did not get ready"
            time.sleep(0.2)
        assert process.poll() is None, f"{name} exited {process.returncode}"
        process.send_signal(signal.SIGTERM)  # once: a second one would be the "exit now" escape
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        out.close()
    assert code == 0, f"{name} exited {code}: {said(tmp_path)}"
    if name == "dev":
        report = (tmp_path / "state" / "logs" / "dev.log").read_text()
        assert "dev stopped" in report and "not cleanly" not in report, report
        for service in ("ingress", *plan.CONSUMERS):
            assert f"{service:<11} exited 0" in report, report


def test_a_stop_signal_while_the_command_loads_exits_0_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    # `voicecall dev` stopped right after starting its services: a child still importing its modules got the
    # SIGTERM with no handler yet, died of it (-15) and was reported as not stopped cleanly.
    from voicecall import cli

    before = signal.getsignal(signal.SIGTERM)
    started: list[str] = []
    real_import = cli.importlib.import_module

    def import_then_signal(name: str) -> Any:
        module = real_import(name)
        if name == "voicecall.billing.cli":
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the command's module loads
            monkeypatch.setattr(module, "main", lambda args: started.append("main") or 1)
        return module

    monkeypatch.setattr(cli.importlib, "import_module", import_then_signal)
    assert cli.main(["billing"]) == 0
    assert started == [] and signal.getsignal(signal.SIGTERM) is before


def test_a_stop_signal_after_the_command_loaded_but_before_its_loop_runs_stops_it_cleanly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The same run of `voicecall dev` a second time: the SIGTERM reached `calls` after its modules loaded, while it
    # read its settings, before its event loop took over the signal (calls exited -15).
    import asyncio

    from voicecall import cli
    from voicecall.runtime import lifecycle

    before = signal.getsignal(signal.SIGTERM)
    seen: list[str] = []

    async def service(stop: asyncio.Event) -> None:
        await asyncio.wait_for(stop.wait(), timeout=10)
        seen.append("stopped")

    def main(args: Any) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # the command is starting: settings, logging, its loop
        return lifecycle.run(service)

    module = cli.importlib.import_module("voicecall.billing.cli")
    monkeypatch.setattr(module, "main", main)
    assert cli.main(["billing"]) == 0
    assert seen == ["stopped"] and signal.getsignal(signal.SIGTERM) is before


def test_a_second_stop_signal_before_the_command_took_over_exits_at_once() -> None:
    program = ("import os, signal, time\n"
               "from voicecall.runtime import stops\n"
               "with stops.deferred():\n"
               "    os.kill(os.getpid(), signal.SIGTERM)\n"
               "    assert stops.requested()\n"
               "    os.kill(os.getpid(), signal.SIGTERM)\n"
               "    time.sleep(10)\n")
    finished = subprocess.run([sys.executable, "-c", program], timeout=30, capture_output=True, text=True)
    assert finished.returncode == 1, finished.stderr
