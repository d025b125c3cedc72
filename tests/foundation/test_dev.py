"""`voicecall dev`: starts the services against the broker, answers on its ports, exits 0 on SIGTERM, and with
`--simulate` (what `make run` runs) billing records arrive and a Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) stops every service cleanly, leaving no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from kafka_helpers import new_prefix
from process_helpers import alive, free_port_run, taken_port
from voicecall.devenv.ports import free_port, port_is_free

CONSUMERS = ("dedup", "billing", "recordings", "calls")
SERVICES = ("ingress", *CONSUMERS)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def dev_env(ingress_port: int, prefix: str) -> dict[str, str]:
    return {**os.environ, "VOICECALL_TOPIC_PREFIX": prefix, "VOICECALL_INGRESS_PORT": str(ingress_port),
            "VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_LOG_FORMAT": "json"}


def read_until_running(process: subprocess.Popen[str], timeout: float = 90) -> str:
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "stop:       Ctrl-C" in line or not line:
            break
    return "".join(lines)


def child_pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"^  (\w+)\s+pid (\d+)", output, re.MULTILINE)}


def test_dev_runs_every_service_and_stops_cleanly_on_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    ingress_port, metrics_base = free_port(), free_port_run(len(CONSUMERS))
    env = dev_env(ingress_port, new_prefix())
    env["VOICECALL_METRICS_PORT"] = str(metrics_base)  # the consumers' ports: this one and the next three
    process = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", kafka_bootstrap,
         "--state-dir", str(tmp_path), "--partitions", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: dict[str, int] = {}
    try:
        output = read_until_running(process)
        assert "voicecall dev is running" in output, output
        assert "skipped" not in output, output  # every service is part of the build
        pids = child_pids(output)
        assert set(pids) == set(SERVICES), output

        urls = [f"http://127.0.0.1:{ingress_port}/healthz"] + [
            f"http://127.0.0.1:{metrics_base + i}/metrics" for i in range(len(CONSUMERS))]
        for url in urls:
            assert url.rsplit("/", 1)[0] in output  # printed where to look
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(get(url) == 200 for url in urls):
            time.sleep(0.5)
        assert [get(url) for url in urls] == [200] * len(urls), output
        for service in SERVICES:
            assert (tmp_path / "logs" / f"{service}.log").exists()
    finally:
        process.send_signal(signal.SIGTERM)  # dev alone: it stops each child itself
        code = process.wait(timeout=90)
    rest = process.stdout.read() if process.stdout else ""
    assert code == 0, rest
    assert "dev stopped" in rest and "not cleanly" not in rest, rest
    for service in SERVICES:
        assert f"{service:<11} exited 0" in rest, rest
        assert not alive(pids[service]), service


def test_dev_simulate_delivers_billing_and_ctrl_c_leaves_nothing_behind(kafka_bootstrap: str,
                                                                         tmp_path: Path) -> None:
    prefix = new_prefix()
    ingress_port, metrics_base, recording_port = free_port(), free_port_run(len(CONSUMERS)), free_port()
    # A third of the CDRs withheld, and a grace of 1 s shared by the simulator and the calls stage: missing calls
    # show within seconds of their disconnect.
    env = {**dev_env(ingress_port, prefix), "VOICECALL_CALLS_CDR_GRACE": "1s"}
    process = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "dev", "--simulate", "--rate", "5", "--broker", "external",
         "--bootstrap", kafka_bootstrap, "--state-dir", str(tmp_path), "--partitions", "2",
         "--metrics-base-port", str(metrics_base), "--recording-port", str(recording_port),
         "--lost-cdr-share", "0.34"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, like a shell job: Ctrl-C goes to the whole group
    pids: dict[str, int] = {}
    try:
        output = read_until_running(process)
        pids = child_pids(output)
        assert set(pids) == {*SERVICES, "simulate"}, output
        assert f"recording API http://127.0.0.1:{recording_port}" in output, output
        assert "tail billing" in output and f"VOICECALL_TOPIC_PREFIX={prefix}" in output, output
        # the app secret reaches the simulator through its environment, not its command line (ps shows that)
        cmdline = b""
        deadline = time.monotonic() + 10  # read empty while the just-started process is still being set up (load)
        while not cmdline and time.monotonic() < deadline:
            cmdline = Path(f"/proc/{pids['simulate']}/cmdline").read_bytes()
            time.sleep(0.05)
        assert b"simulate" in cmdline and b"dev-app-secret" not in cmdline

        tail = subprocess.run(
            [sys.executable, "-m", "voicecall", "tail", "billing", "--from-beginning", "--max", "1",
             "--timeout", "90"],
            env={**env, "VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap}, capture_output=True, text=True, timeout=120)
        assert tail.returncode == 0, tail.stderr
        lines = tail.stdout.splitlines()
        assert len(lines) == 1, (tail.stdout, tail.stderr, output)
        record = orjson.loads(lines[0])
        assert record["topic"] == prefix + "billing"
        assert record["value"]["sessionId"] == record["key"]
        assert {"legs", "totalSeconds", "totalBilledMinutes", "answered"} <= set(record["value"])
        assert b"--lost-cdr-share\x000.34\x00--out-of-order-share" in cmdline
        calls = subprocess.run(
            [sys.executable, "-m", "voicecall", "tail", "calls", "--from-beginning", "--max", "2000",
             "--timeout", "20"],
            env={**env, "VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap}, capture_output=True, text=True, timeout=120)
        records = [orjson.loads(line) for line in calls.stdout.splitlines()]
        missing = [r["value"] for r in records if r["value"] and r["value"]["cdr"]["status"] == "missing"]
        assert missing, f"{len(records)} calls records, none missing"
        assert all(m["state"] == "ended" and not m["complete"] for m in missing)
        # the ingress runs in log mode and the simulator signs: a newcomer sees valid pushes on /metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{ingress_port}/metrics", timeout=5) as response:
            exposition = response.read().decode()
        counts = {outcome: float(value) for outcome, value in
                  re.findall(r'^voicecall_ingress_signature_total\{outcome="([^"]+)"\} (\S+)$', exposition, re.M)}
        assert counts["valid"] > 0 and sum(counts.values()) == counts["valid"], counts
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = process.wait(timeout=90)
    rest = process.stdout.read() if process.stdout else ""
    assert code == 0, rest
    assert "dev stopped" in rest and "not cleanly" not in rest, rest
    for name in (*SERVICES, "simulate"):
        assert f"{name:<11} exited 0" in rest, rest
    assert "simulated platform: seed" in rest and "receiver lost" in rest, rest  # the simulator's summary
    for name, pid in pids.items():
        assert not alive(pid), name
    for name in SERVICES:
        log = (tmp_path / "logs" / f"{name}.log").read_text()
        assert "second signal" not in log, name  # each child got exactly one signal and drained
        assert "stopped cleanly" in log, name


def test_dev_names_the_variable_of_a_taken_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    with taken_port() as port:
        result = subprocess.run(
            [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", kafka_bootstrap,
             "--state-dir", str(tmp_path)],
            env=dev_env(port, "unused."), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2  # a setting to change: starting again unchanged cannot help
    assert f"VOICECALL_INGRESS_PORT={port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "voicecall dev is running" not in result.stdout


def test_dev_checks_every_service_setting_before_starting_anything(tmp_path: Path) -> None:
    # a bad value meant for one service stops `voicecall dev` at once, naming the variable; no broker is contacted
    env = {**dev_env(free_port(), "unused."), "VOICECALL_DEDUP_WINDOW": "forever", "VOICECALL_INGRESS_ALLOW": "x/99"}
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", "127.0.0.1:1",
         "--state-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "VOICECALL_DEDUP_WINDOW" in result.stderr and "VOICECALL_INGRESS_ALLOW" in result.stderr
    assert "Traceback" not in result.stderr and "broker" not in result.stdout


def test_dev_simulate_on_the_noida_fallback_broker(tmp_path: Path) -> None:
    # `make run` on a machine without java/mvn: the noida-db broker, the services' transactions and groups on it
    kafka_port, ingress_port, metrics_base = free_port(), free_port(), free_port_run(len(CONSUMERS))
    env = {**dev_env(ingress_port, "voicecall."), "VOICECALL_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "dev", "--simulate", "--rate", "5", "--broker", "noida",
         "--state-dir", str(tmp_path), "--metrics-base-port", str(metrics_base), "--recording-port",
         str(free_port())], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: dict[str, int] = {}
    try:
        output = read_until_running(process)
        assert f"broker (noida) on 127.0.0.1:{kafka_port}" in output, output
        pids = child_pids(output)
        assert set(pids) == {"broker", *SERVICES, "simulate"}, output
        tail = subprocess.run([sys.executable, "-m", "voicecall", "tail", "billing", "--from-beginning", "--max", "1",
                               "--timeout", "90"], env=env, capture_output=True, text=True, timeout=120)
        assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 1, (tail.stdout, tail.stderr)
        assert orjson.loads(tail.stdout)["topic"] == "voicecall.billing"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=90)
    rest = process.stdout.read() if process.stdout else ""
    assert code == 0, rest
    assert "not cleanly" not in rest, rest
    for name, pid in pids.items():
        assert not alive(pid), name
    assert port_is_free(kafka_port)
    # the shutdown report is in .state/logs/dev.log too: every exit status, the broker's, the simulator's summary
    report = (tmp_path / "logs" / "dev.log").read_text()
    for name in (*SERVICES, "simulate", "broker"):
        assert re.search(rf"^  {name:<11} exited 0", report, re.MULTILINE), report
    assert "simulated platform: seed" in report and report.rstrip().endswith("dev stopped"), report


def test_dev_second_ctrl_c_exits_at_once_leaving_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    ingress_port, metrics_base = free_port(), free_port_run(len(CONSUMERS))
    process = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", kafka_bootstrap,
         "--state-dir", str(tmp_path), "--partitions", "1", "--metrics-base-port", str(metrics_base)],
        env=dev_env(ingress_port, new_prefix()), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    output = read_until_running(process)
    pids = child_pids(output)
    assert set(pids) == set(SERVICES), output
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)  # two separate signals (the kernel merges two sent at the same instant into one)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=30)
    rest = process.stdout.read() if process.stdout else ""
    assert code == 1 and "second signal, exiting now" in rest, rest
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        time.sleep(0.1)
    assert [name for name, pid in pids.items() if alive(pid)] == []
