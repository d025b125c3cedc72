"""Every mistake is one line: each command, given an invalid setting, a broker it cannot reach or a port that is
taken, says what is wrong in one line naming the variable or flag and exits 2 — no traceback, no resource warning.
The long-running services are the exception for the broker: they wait for it (one line, then once a minute) and
still stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_helpers import new_prefix
from process_helpers import taken_port
from voicecall import cli
from voicecall.runtime import streams

# argv that passes each command's own argument checks, so that only the setting under test can stop it
ARGV = {
    "ingress": ["ingress"],
    "dedup": ["dedup"],
    "billing": ["billing"],
    "recordings": ["recordings"],
    "topics": ["topics", "create"],
    "replay-reset": ["replay", "reset", "--service", "dedup", "--from=-1h"],
    "replay-copy": ["replay", "copy", "--from-topic", "fee.raw", "--to-topic", "fee.unique", "--from=-1h"],
    "tail": ["tail", "billing"],
    "simulate": ["simulate", "--notify-url", "http://127.0.0.1:1/notify", "--calls", "1"],
    "broker": ["broker", "--broker", "noida"],
    "dev": ["dev"],
}

# (environment, the variable the one line must name)
INVALID = {
    "protocol": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "TLS"}, "VOICECALL_KAFKA_SECURITY_PROTOCOL"),
    "mechanism": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "VOICECALL_KAFKA_SASL_MECHANISM": "GSSAPI",
                   "VOICECALL_KAFKA_SASL_USERNAME": "u", "VOICECALL_KAFKA_SASL_PASSWORD": "p"},
                  "VOICECALL_KAFKA_SASL_MECHANISM"),
    "no-mechanism": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "VOICECALL_KAFKA_SASL_MECHANISM"),
    "mechanism-unused": ({"VOICECALL_KAFKA_SASL_MECHANISM": "PLAIN"}, "VOICECALL_KAFKA_SECURITY_PROTOCOL"),
    "no-credentials": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "VOICECALL_KAFKA_SASL_MECHANISM":
                        "SCRAM-SHA-512"}, "VOICECALL_KAFKA_SASL_USERNAME and VOICECALL_KAFKA_SASL_PASSWORD"),
    "cafile-missing": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "SSL", "VOICECALL_KAFKA_SSL_CAFILE": "/nonexistent.pem"},
                       "VOICECALL_KAFKA_SSL_CAFILE"),
    "cafile-not-pem": ({"VOICECALL_KAFKA_SECURITY_PROTOCOL": "SSL", "VOICECALL_KAFKA_SSL_CAFILE": __file__},
                       "VOICECALL_KAFKA_SSL_CAFILE"),
    "log-level": ({"VOICECALL_LOG_LEVEL": "loud"}, "VOICECALL_LOG_LEVEL"),
    "log-format": ({"VOICECALL_LOG_FORMAT": "xml"}, "VOICECALL_LOG_FORMAT"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("VOICECALL_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(streams, "protect", lambda: None)  # pytest owns sys.stdout/stderr here
    yield monkeypatch


@pytest.mark.parametrize("case", sorted(INVALID))
@pytest.mark.parametrize("command", sorted(ARGV))
def test_an_invalid_setting_is_one_line_naming_it(command: str, case: str, clean_env: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    env, variable = INVALID[case]
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(SystemExit) as stopped:
        cli.main(ARGV[command])
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("invalid configuration: ") and variable in err, err
    assert "Traceback" not in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_with(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VOICECALL_")}
    return {**env, "VOICECALL_LOG_FORMAT": "json", **values}


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicecall", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line(result: subprocess.CompletedProcess[str], *names: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert all(name in lines[0] for name in names), result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr


@pytest.mark.parametrize("command", ["tail", "replay-reset", "replay-copy", "replay-copy-dry", "topics", "dev",
                                     "broker"])
def test_a_broker_it_cannot_reach_is_one_line_with_the_address(command: str, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    argv = {**ARGV, "replay-copy-dry": [*ARGV["replay-copy"], "--dry-run"],
            "dev": ["dev", "--broker", "external", "--state-dir", str(tmp_path)],
            "broker": ["broker", "--broker", "external", "--state-dir", str(tmp_path)]}[command]
    result = run(argv, env_with(VOICECALL_KAFKA_BOOTSTRAP=address))
    assert_one_line(result, f"cannot reach Kafka at {address}", "VOICECALL_KAFKA_BOOTSTRAP", "--bootstrap")
    assert result.stderr.startswith(f"voicecall {' '.join(argv[:2]) if argv[0] in ('replay', 'topics') else argv[0]}:")


def test_the_bootstrap_flag_is_the_address_tried() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run(["tail", "billing", "--bootstrap", address], env_with(VOICECALL_KAFKA_BOOTSTRAP="127.0.0.1:9"))
    assert_one_line(result, f"cannot reach Kafka at {address}")


@pytest.mark.parametrize("service", ["ingress", "dedup", "billing", "recordings"])
def test_a_service_waits_for_an_unreachable_broker_saying_so_once(service: str, tmp_path: Path) -> None:
    env = env_with(VOICECALL_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", VOICECALL_METRICS_PORT="0",
                   VOICECALL_INGRESS_PORT="0", VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_METRICS_HOST="127.0.0.1",
                   VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
                   VOICECALL_RECORDINGS_STORE=(tmp_path / "store").as_uri())
    process = subprocess.Popen([sys.executable, "-m", "voicecall", service], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(6)  # several attempts (0.5 s, 1 s, 2 s, …) fail meanwhile
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    notices = [line for line in err.splitlines() if "broker unreachable, retrying" in line]
    assert len(notices) == 1, err
    assert "Connection refused" in notices[0] or "Connect call failed" in notices[0], notices
    assert "Traceback" not in err and "Unclosed" not in err and '"level":"error"' not in err, err


@pytest.fixture
def taken() -> Iterator[int]:
    with taken_port() as port:
        yield port


@pytest.mark.parametrize(("service", "flag", "variable"), [
    ("ingress", "--port", "VOICECALL_INGRESS_PORT"),
    ("dedup", "--metrics-port", "VOICECALL_METRICS_PORT"),
    ("billing", "--metrics-port", "VOICECALL_METRICS_PORT"),
    ("recordings", "--metrics-port", "VOICECALL_METRICS_PORT"),
])
def test_a_taken_port_is_one_line_naming_variable_and_flag(service: str, flag: str, variable: str, taken: int,
                                                            kafka_bootstrap: str, tmp_path: Path) -> None:
    env = env_with(VOICECALL_KAFKA_BOOTSTRAP=kafka_bootstrap, VOICECALL_TOPIC_PREFIX=new_prefix(),
                   VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_METRICS_HOST="127.0.0.1",
                   VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
                   VOICECALL_RECORDINGS_STORE=(tmp_path / "store").as_uri())
    for how in ([flag, str(taken)], []):  # the flag, then the variable
        result = run([service, *how], {**env, variable: str(taken)} if not how else env)
        assert_one_line(result, f"{variable}={taken}", f"127.0.0.1:{taken} is already in use", variable, flag)


def test_the_simulator_recording_api_on_a_taken_port(taken: int) -> None:
    result = run([*ARGV["simulate"], "--serve-recordings", f"127.0.0.1:{taken}"], env_with())
    assert_one_line(result, f"--serve-recordings={taken}", "already in use")


def test_the_broker_on_a_taken_port(taken: int, tmp_path: Path) -> None:
    result = run(["broker", "--broker", "noida", "--state-dir", str(tmp_path)],
                 env_with(VOICECALL_KAFKA_BOOTSTRAP=f"127.0.0.1:{taken}"))
    assert_one_line(result, f"VOICECALL_KAFKA_BOOTSTRAP=127.0.0.1:{taken}", "already in use")


def test_dev_reports_every_taken_port_at_once_and_starts_nothing(taken: int, tmp_path: Path) -> None:
    with socket.socket() as second:
        second.bind(("127.0.0.1", 0))
        second.listen()
        ingress = second.getsockname()[1]
        result = run(["dev", "--broker", "noida", "--state-dir", str(tmp_path)],
                     env_with(VOICECALL_KAFKA_BOOTSTRAP=f"127.0.0.1:{taken}", VOICECALL_INGRESS_PORT=str(ingress)))
    assert result.returncode == 2, result.stderr
    assert f"VOICECALL_KAFKA_BOOTSTRAP=127.0.0.1:{taken}" in result.stderr, result.stderr
    assert f"VOICECALL_INGRESS_PORT={ingress}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "stopped cleanly" not in result.stderr, result.stderr
    assert "broker (" not in result.stdout and "dev stopped" not in result.stdout, result.stdout
    assert not (tmp_path / "broker").exists()  # nothing was started


@pytest.mark.parametrize("token", [None, "s3cret-path-token"])
def test_the_ingress_says_whether_the_path_token_is_on_never_the_token(token: str | None, tmp_path: Path) -> None:
    env = env_with(VOICECALL_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", VOICECALL_INGRESS_PORT="0",
                   VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
                   **({"VOICECALL_INGRESS_PATH_TOKEN": token} if token else {}))
    process = subprocess.Popen([sys.executable, "-m", "voicecall", "ingress"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert process.stderr is not None
    listening = ""
    for line in process.stderr:
        if "ingress listening" in line:
            listening = line
            break
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
    assert f'"path_token_enabled":{"true" if token else "false"}' in listening, listening
    assert "***" not in listening and (token is None or token not in listening + rest)
