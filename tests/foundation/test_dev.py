"""`voicecall dev`: starts the services against the broker, answers on its ports, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

SERVICES = ("ingress", "dedup", "billing", "recordings")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def test_dev_runs_every_service_and_stops_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    ingress_port, metrics_base = free_port(), free_port()
    while any(free_port() == metrics_base + i for i in range(1, 4)):  # pragma: no cover - port race guard
        metrics_base = free_port()
    env = {**os.environ, "VOICECALL_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.", "VOICECALL_INGRESS_PORT":
           str(ingress_port), "VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", kafka_bootstrap,
         "--state-dir", str(tmp_path), "--metrics-base-port", str(metrics_base), "--partitions", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "voicecall dev is running" in line or not line:
                break
        output = "".join(lines)
        assert "voicecall dev is running" in output, output
        assert "skipped" not in output, output  # every service is part of the build

        urls = [f"http://127.0.0.1:{ingress_port}/healthz"] + [
            f"http://127.0.0.1:{metrics_base + i}/metrics" for i in range(1, len(SERVICES))]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(get(url) == 200 for url in urls):
            time.sleep(0.5)
        assert [get(url) for url in urls] == [200] * len(urls), output
        for service in SERVICES:
            assert (tmp_path / "logs" / f"{service}.log").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0
    rest = process.stdout.read() if process.stdout else ""
    assert "dev stopped" in rest
