"""Command-line times: ISO 8601, Huawei's UTC format, relative times; windows are [start, end)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from voicecall.replay import names, window
from voicecall.runtime import times

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-23T10:00:00Z", NOW_MS - 2 * 3600_000),
    ("2026-11-23T12:00:00+02:00", NOW_MS - 2 * 3600_000),
    ("2026-11-23T10:00:00", NOW_MS - 2 * 3600_000),  # no offset = UTC
    ("2026-11-23 10:00:00", NOW_MS - 2 * 3600_000),  # Huawei's format, UTC
    ("2026-11-23  10:00:00", NOW_MS - 2 * 3600_000),  # doubled space, as old pushes have it
    ("2026-11-23T10:00:00.250Z", NOW_MS - 2 * 3600_000 + 250),
    ("2026-11-23", NOW_MS - 12 * 3600_000),
    ("-2h", NOW_MS - 2 * 3600_000),
    ("-90m", NOW_MS - 90 * 60_000),
    ("-7d", NOW_MS - 7 * 86_400_000),
    ("-1500ms", NOW_MS - 1500),
    ("+1h", NOW_MS + 3600_000),
    ("now", NOW_MS),
])
def test_parse(text: str, expected: int) -> None:
    assert window.parse(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "-2x", "2026-13-01", "23/11/2026 10:00"])
def test_parse_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(window.BadTime, match="ISO 8601"):
        window.parse(text, now=NOW)


def test_window_is_start_inclusive_end_exclusive() -> None:
    win = window.Window(1000, 2000)
    assert [t for t in (999, 1000, 1999, 2000) if win.contains(t)] == [1000, 1999]
    assert window.Window(1000).contains(10**13)
    with pytest.raises(window.BadTime):
        window.Window(2000, 2000)


def test_iso_round_trips() -> None:
    assert window.parse(times.iso_ms(NOW_MS + 123)) == NOW_MS + 123


def test_topic_names_resolve_suffix_or_full_name() -> None:
    existing = {"voicecall.billing", "voicecall.fee.raw", "other"}
    assert names.resolve("billing", "voicecall.", existing) == "voicecall.billing"
    assert names.resolve("voicecall.fee.raw", "voicecall.", existing) == "voicecall.fee.raw"
    assert names.resolve("other", "voicecall.", existing) == "other"
    with pytest.raises(names.UnknownTopic, match=r"voicecall\.billing"):
        names.resolve("bill", "voicecall.", existing)
