"""Start-up truth: when `auto` falls back to noida-db, the broker says why (no java, the jars neither cached nor
fetchable without mvn)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voicecall.devenv import broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_auto_without_java_says_it_uses_noida_and_why(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with no java (and no mvn) on it
    bare.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("VOICECALL_") and key != "JAVA_HOME"}
    port = free_port()
    env.update(PATH=str(bare), VOICECALL_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    process = subprocess.Popen([sys.executable, "-m", "voicecall", "broker", "--broker", "auto", "--state-dir",
                                str(tmp_path / "state")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert first.startswith("broker: noida-db instead of Apache Kafka: ") and "`java`" in first, (first, err)
    assert f"broker (noida) listening on 127.0.0.1:{port}" in second, (second, err)
    assert process.returncode == 0, err


def test_auto_with_java_but_no_jars_and_no_mvn_names_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java, "the Apache Kafka tests need java on PATH"
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(bare))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    reason = broker._apache_missing(tmp_path / "no-jars-here")
    assert reason is not None and "`mvn` is not on PATH" in reason, reason
