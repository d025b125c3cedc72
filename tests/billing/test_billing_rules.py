"""Table tests of the billing rules with hand-checked numbers, and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import billing_samples as samples
import pytest
from hypothesis import given, settings, strategies as st

from voicecall.billing import rules
from voicecall.runtime.deadletter import Reason


def legs(billed: rules.Billed) -> list[tuple[str, int, int]]:
    return [(leg.leg, leg.seconds, leg.billed_minutes) for leg in billed.legs]


def test_f2_callback_without_service_type_bills_both_legs() -> None:
    billed = rules.bill(samples.F2)
    # A: 01:16:31 → 01:19:46 = 3 min 15 s = 195 s → 4 min; B: 01:16:45 → 01:19:46 = 3 min 1 s = 181 s → 4 min.
    assert legs(billed) == [("A", 195, 4), ("B", 181, 4)]
    assert billed.total_seconds == 376
    assert billed.total_billed_minutes == 8
    assert billed.answered is True
    assert billed.inferred is True and billed.service_type is None and billed.effective_service_type == "002"
    assert billed.end_time == datetime(2016, 12, 26, 1, 19, 46, tzinfo=UTC)
    assert billed.legs[0].answer_time == datetime(2016, 12, 26, 1, 16, 31, tzinfo=UTC)


def test_f5_fragment_b_leg() -> None:
    billed = rules.bill(samples.F5)
    # B: 03:04:38 → 03:04:49 = 11 s → 1 min; the fragment has no callOutAnswerTime, so A is unanswered.
    assert legs(billed) == [("A", 0, 0), ("B", 11, 1)]
    assert billed.answered is True
    assert billed.legs[0].answered is False and billed.legs[1].answered is True
    assert billed.inferred is False and billed.service_type == "002"


def test_f5_with_a_answered() -> None:
    # A: 03:04:30 → 03:04:49 = 19 s → 1 min.
    assert legs(rules.bill(samples.f5_with_a_answered())) == [("A", 19, 1), ("B", 11, 1)]


def test_notification_uses_call_out_answer_time_and_ignores_fwd_fields() -> None:
    # 04:00:07 → 04:01:07 = exactly 60 s → exactly 1 min (not 2).
    fee = samples.notification(fwdAnswerTime="2019-01-24 04:00:00")
    billed = rules.bill(fee)
    assert legs(billed) == [("A", 60, 1)]
    assert billed.callback is False and billed.effective_service_type == "001"


@pytest.mark.parametrize(
    ("end", "seconds", "minutes"),
    [
        ("2019-01-24 04:00:07", 0, 0),  # answered and hung up in the same second: 0 minutes, still answered
        ("2019-01-24 04:00:08", 1, 1),
        ("2019-01-24 04:01:06", 59, 1),
        ("2019-01-24 04:01:08", 61, 2),
        ("2019-01-24 05:00:07", 3600, 60),
        ("2019-01-25 04:01:07", 86460, 1441),  # exactly 24 h + 1 min is the longest accepted leg
    ],
)
def test_minute_boundaries(end: str, seconds: int, minutes: int) -> None:
    billed = rules.bill(samples.notification(callEndTime=end))
    assert legs(billed) == [("A", seconds, minutes)]
    assert billed.answered is True


@pytest.mark.parametrize("missing", [..., ""])
def test_unanswered_callback_is_zero_and_zero(missing: Any) -> None:
    fee = {**samples.F5, "fwdAnswerTime": missing, "serviceType": "002"}
    fee = {k: v for k, v in fee.items() if v is not ...}
    billed = rules.bill(fee)
    assert legs(billed) == [("A", 0, 0), ("B", 0, 0)]
    assert billed.answered is False
    assert billed.legs[1].answer_time is None


def test_unanswered_call_without_end_time_is_billed_zero() -> None:
    fee = samples.notification(callOutAnswerTime=..., callEndTime=...)
    billed = rules.bill(fee)
    assert legs(billed) == [("A", 0, 0)] and billed.end_time is None and billed.answered is False


def test_empty_string_times_and_doubled_spaces() -> None:
    fee = {**samples.F2, "callOutAnswerTime": "", "callEndTime": "2016-12-26   01:19:46 "}
    assert legs(rules.bill(fee)) == [("A", 0, 0), ("B", 181, 4)]


def test_numeric_service_type_is_read_as_three_digits() -> None:
    fee = {**samples.F5, "serviceType": 2}
    billed = rules.bill(fee)
    assert billed.service_type == "002" and len(billed.legs) == 2


def test_unknown_service_type_has_only_leg_a() -> None:
    billed = rules.bill({**samples.F2, "serviceType": "004"})
    assert legs(billed) == [("A", 195, 4)]
    assert billed.inferred is False and billed.effective_service_type == "004"


@pytest.mark.parametrize(
    ("changes", "reason", "detail_part"),
    [
        ({"sessionId": ...}, Reason.MISSING_SESSION_ID, "sessionId"),
        ({"sessionId": ""}, Reason.MISSING_SESSION_ID, "sessionId"),
        ({"sessionId": 42}, Reason.MISSING_SESSION_ID, "42"),
        ({"callEndTime": "2019-01-24T04:01:07Z"}, Reason.BAD_TIME, "callEndTime"),
        ({"callOutAnswerTime": "2019-02-30 04:00:00"}, Reason.BAD_TIME, "callOutAnswerTime"),
        ({"callOutAnswerTime": 1548302407}, Reason.BAD_TIME, "callOutAnswerTime"),
        ({"callEndTime": ...}, Reason.MISSING_END_TIME, "leg A"),
        ({"callEndTime": ""}, Reason.MISSING_END_TIME, "leg A"),
        ({"callEndTime": "2019-01-24 04:00:06"}, Reason.END_BEFORE_ANSWER, "1 s before"),
        ({"callEndTime": "2019-01-25 04:01:08"}, Reason.DURATION_TOO_LONG, "86461 s"),
        ({"serviceType": ["001"]}, Reason.BAD_SERVICE_TYPE, "serviceType"),
        ({"serviceType": True}, Reason.BAD_SERVICE_TYPE, "serviceType"),
    ],
)
def test_bad_data_is_refused_with_a_reason(changes: dict[str, Any], reason: str, detail_part: str) -> None:
    with pytest.raises(rules.BadRecord) as caught:
        rules.bill(samples.notification(**changes))
    assert caught.value.reason == reason
    assert detail_part in caught.value.detail


def test_bad_b_leg_time_in_callback_is_refused() -> None:
    with pytest.raises(rules.BadRecord) as caught:
        rules.bill({**samples.F5, "fwdAnswerTime": "2019-01-24 03:05:00"})  # after callEndTime 03:04:49
    assert caught.value.reason == Reason.END_BEFORE_ANSWER and "leg B" in caught.value.detail


@pytest.mark.parametrize("value", [[], "text", 3, None])
def test_not_an_object(value: Any) -> None:
    with pytest.raises(rules.BadRecord) as caught:
        rules.bill(value)
    assert caught.value.reason == Reason.NOT_AN_OBJECT


# ---- properties -------------------------------------------------------------------------------------------------

EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
seconds_st = st.integers(min_value=0, max_value=rules.MAX_LEG_SECONDS)


def fmt(moment: datetime, spaces: int = 1) -> str:
    return moment.strftime("%Y-%m-%d") + " " * spaces + moment.strftime("%H:%M:%S")


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_billed_minutes_is_ceil(seconds: int) -> None:
    minutes = rules.billed_minutes(seconds)
    assert (minutes - 1) * 60 < seconds <= minutes * 60 or (seconds == 0 and minutes == 0)


@settings(max_examples=300, deadline=None)  # a loaded CI machine must not turn slowness into failures
@given(
    end_offset=st.integers(min_value=0, max_value=10 * 365 * 86400),
    a=st.one_of(st.none(), seconds_st),
    b=st.one_of(st.none(), seconds_st),
    spaces=st.integers(min_value=1, max_value=3),
)
def test_callback_legs_are_independent_and_ceiled(end_offset: int, a: int | None, b: int | None,
                                                   spaces: int) -> None:
    end = EPOCH + timedelta(seconds=end_offset)
    fee: dict[str, Any] = {"sessionId": "s", "serviceType": "002", "callEndTime": fmt(end, spaces)}
    if a is not None:
        fee["callOutAnswerTime"] = fmt(end - timedelta(seconds=a), spaces)
    if b is not None:
        fee["fwdAnswerTime"] = fmt(end - timedelta(seconds=b))
    billed = rules.bill(fee)
    leg_a, leg_b = billed.legs
    assert leg_a.seconds == (a or 0) and leg_b.seconds == (b or 0)
    for leg in billed.legs:
        assert leg.seconds >= 0
        assert leg.billed_minutes == -(-leg.seconds // 60)
        assert leg.billed_minutes * 60 >= leg.seconds
    assert billed.answered == (a is not None or b is not None)
    assert billed.total_seconds == leg_a.seconds + leg_b.seconds
    assert billed.total_billed_minutes == leg_a.billed_minutes + leg_b.billed_minutes
    # Independence: dropping B's answer changes nothing about A, and vice versa.
    without_b = rules.bill({k: v for k, v in fee.items() if k != "fwdAnswerTime"})
    assert without_b.legs[0] == leg_a and without_b.legs[1].seconds == 0
    without_a = rules.bill({k: v for k, v in fee.items() if k != "callOutAnswerTime"})
    assert without_a.legs[1] == leg_b and without_a.legs[0].seconds == 0


@settings(deadline=None)
@given(over=st.integers(min_value=1, max_value=10**6), leg=st.sampled_from(["callOutAnswerTime", "fwdAnswerTime"]))
def test_over_long_or_negative_legs_are_never_billed(over: int, leg: str) -> None:
    end = EPOCH + timedelta(days=30)
    for answer in (end - timedelta(seconds=rules.MAX_LEG_SECONDS + over), end + timedelta(seconds=over)):
        fee = {"sessionId": "s", "serviceType": "002", "callEndTime": fmt(end), leg: fmt(answer)}
        with pytest.raises(rules.BadRecord) as caught:
            rules.bill(fee)
        assert caught.value.reason in (Reason.DURATION_TOO_LONG, Reason.END_BEFORE_ANSWER)
