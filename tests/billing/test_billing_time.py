"""huawei.parse_time's fast path (canonical ``yyyy-MM-dd HH:mm:ss`` via fromisoformat) agrees with its general path.

A leading space is allowed by the general path only, so ``" " + text`` takes the general path for the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings, strategies as st

from voicecall import huawei

canonical_shaped = st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\Z")
real_times = st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))


def outcome(text: str) -> datetime | str:
    try:
        result = huawei.parse_time(text)
    except huawei.BadTime:
        return "BadTime"
    assert result is not None
    return result


@settings(max_examples=300, deadline=None)  # a loaded CI machine must not turn slowness into failures
@given(st.one_of(canonical_shaped, real_times))
def test_fast_path_equals_general_path(text: str) -> None:
    fast, general = outcome(text), outcome(" " + text)
    assert fast == general
    if isinstance(fast, datetime):
        assert fast.tzinfo is UTC and fast.utcoffset() is not None and not fast.utcoffset()


@pytest.mark.parametrize("text", ["2019-01-24 24:00:00", "2019-02-29 00:00:00", "2019-01-24 23:59:60",
                                  "0000-01-01 00:00:00", "2019-13-01 00:00:00"])
def test_impossible_times_are_bad_on_both_paths(text: str) -> None:
    assert outcome(text) == outcome(" " + text) == "BadTime"
