"""Configuration: a bad VOICECALL_* value stops the process at start with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from voicecall import topics
from voicecall.runtime import config


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicecall", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


@pytest.mark.parametrize(("variable", "value"), [
    ("VOICECALL_TOPIC_PARTITIONS", "twelve"),
    ("VOICECALL_TOPIC_PARTITIONS", "0"),
    ("VOICECALL_TOPIC_RETENTION", "14 fortnights"),
    ("VOICECALL_TOPIC_PREFIX", "bad prefix!"),
    ("VOICECALL_LOG_LEVEL", "loud"),
])
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    result = run_cli("topics", "create", "--dry-run", **{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_message_omits_value(capsys: pytest.CaptureFixture[str]) -> None:
    class Secretive(config.CommonSettings):
        huawei_app_secret: int = 0

    with pytest.raises(SystemExit):
        config.load(Secretive, huawei_app_secret="hunter2-not-a-number")
    err = capsys.readouterr().err
    assert "VOICECALL_HUAWEI_APP_SECRET" in err
    assert "hunter2" not in err


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECALL_TOPIC_PARTITIONS", "7")
    assert config.load(topics.TopicSettings).topic_partitions == 7
    assert config.load(topics.TopicSettings, topic_partitions=5).topic_partitions == 5
    assert config.load(topics.TopicSettings, topic_partitions=None).topic_partitions == 7


@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 604800.0), ("90m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25), ("3600", 3600.0), ("2w", 1209600.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("1MiB", 1 << 20), ("512KiB", 512 * 1024), ("200MB", 200 * 10**6),
                                            ("4096", 4096)])
def test_sizes(text: str, size: int) -> None:
    assert config.parse_size(text) == size


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_duration_units_scale(number: int, unit: str) -> None:
    assert config.parse_duration(f"{number}{unit}") == pytest.approx(number * config._UNITS[unit])


def test_dry_run_lists_every_topic_of_the_interface() -> None:
    result = run_cli("topics", "create", "--dry-run")
    assert result.returncode == 0, result.stderr
    for suffix in ("status.raw", "fee.raw", "fee.unique", "billing", "recording.stored", "recording.failed",
                   "deadletter"):
        assert f"voicecall.{suffix} " in result.stdout
    assert "cleanup.policy=compact" in result.stdout  # the dedup changelog
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["topic", "partitions", "replicas", "key"]  # a table
    fee_raw = next(row.split() for row in rows if row.startswith("voicecall.fee.raw "))
    assert fee_raw[1:4] == ["12", "3", "sessionId"]
    assert "retention.ms=1209600000" in fee_raw[4] and "min.insync.replicas=2" in fee_raw[4]


def test_unknown_command_exits_non_zero_with_a_message() -> None:
    result = run_cli("definitely-not-a-command")
    assert result.returncode != 0
    assert "definitely-not-a-command" in result.stderr


def test_no_command_is_a_usage_error_and_help_lists_every_command() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "commands:" in result.stderr
    help_text = run_cli("--help")
    assert help_text.returncode == 0
    for command in ("ingress", "dedup", "billing", "recordings", "topics", "replay", "tail", "simulate", "broker",
                    "dev"):
        assert f"  {command} " in help_text.stdout, command
