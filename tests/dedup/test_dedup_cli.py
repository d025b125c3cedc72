"""``voicecall dedup`` settings: defaults, flags, and a bad value stopping the process with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from voicecall.dedup.config import DedupSettings
from voicecall.runtime import config


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VOICECALL_"):
            monkeypatch.delenv(name)
    settings = DedupSettings()
    assert settings.dedup_window == 7 * 86400 and settings.batch_records == 2000 and settings.batch_time == 0.1
    assert config.load(DedupSettings, dedup_window="36h").dedup_window == 36 * 3600
    monkeypatch.setenv("VOICECALL_DEDUP_WINDOW", "90m")
    monkeypatch.setenv("VOICECALL_BATCH_TIME", "250ms")
    settings = DedupSettings()
    assert settings.dedup_window == 5400 and settings.batch_time == 0.25


def test_bad_window_stops_with_the_variable_named() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env["VOICECALL_DEDUP_WINDOW"] = "a week"
    result = subprocess.run([sys.executable, "-m", "voicecall", "dedup"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "VOICECALL_DEDUP_WINDOW" in result.stderr
    env["VOICECALL_DEDUP_WINDOW"] = "7d"
    env["VOICECALL_BATCH_RECORDS"] = "0"
    result = subprocess.run([sys.executable, "-m", "voicecall", "dedup"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2 and "VOICECALL_BATCH_RECORDS" in result.stderr
