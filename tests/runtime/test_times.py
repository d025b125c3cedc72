"""runtime/times.py: the one set of time formatters agrees with the standard library's longhand."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, strategies as st

from voicecall.runtime import times


@given(st.integers(min_value=-10**11, max_value=253_402_300_799_999))  # up to 9999-12-31T23:59:59.999Z
def test_iso_ms_is_the_datetime_text(ms: int) -> None:
    expected = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    assert times.iso_ms(ms) == expected.replace("+00:00", "Z")


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])))
def test_iso_z_is_utc_to_the_second(moment: datetime) -> None:
    assert times.iso_z(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_iso_z_pads_early_years_as_iso_8601_does() -> None:
    assert times.iso_z(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"


def test_clock_and_now_read_the_current_time() -> None:
    clock = times.Clock()
    before = time.time()
    stamps = [clock.now(), times.now_iso(), clock.now()]
    after = time.time()
    for stamp in stamps:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        assert before - 0.001 <= moment <= after
        assert stamp.endswith("Z") and len(stamp) == len("2019-01-24T03:05:16.402Z")
