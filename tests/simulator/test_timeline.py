"""Property tests of the generated calls: each call's status timeline is ordered, follows the leg convention, and
agrees with its CDR (answer times = the answer events' timestamps, callEndTime = the disconnect's)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from hypothesis import given, settings, strategies as st
from simulator_support import START

from voicecall import huawei
from voicecall.simulator.calls import Call, CallOptions, generate
from voicecall.simulator.model import NOT_ASKED, NOT_CALLBACK, UNANSWERED, UNDER_3S

LEG_EVENTS = ("callout", "alerting", "answer")
A_FIELDS = {"callout": "callOutStartTime", "alerting": "callOutAlertingTime", "answer": "callOutAnswerTime"}
B_FIELDS = {"callout": "fwdStartTime", "alerting": "fwdAlertingTime", "answer": "fwdAnswerTime"}

option_sets = st.builds(
    lambda seed, per_leg, empty, double, apps, mix: dataclasses.replace(
        CallOptions(seed=seed, start=START, rate=7.0), per_leg_status=per_leg, empty_times=empty,
        double_space_share=double, app_keys=tuple(f"app-{n}" for n in range(apps)), mix=mix),
    st.integers(0, 2**32), st.booleans(), st.booleans(), st.sampled_from((0.0, 1.0)), st.integers(1, 3),
    st.sampled_from(({"callback": 1.0}, {"notify": 1.0}, {"callback": 0.6, "notify": 0.3, "verify": 0.1})))


def info(event: object) -> dict:  # type: ignore[type-arg]
    return event.body["statusInfo"]  # type: ignore[attr-defined,no-any-return]


def check_call(call: Call, options: CallOptions) -> None:
    fee, events = call.fee, call.status
    types = [event.event_type for event in events]
    assert types[0] == "callout" and types[-1] == "disconnect" and types.count("disconnect") == 1
    # one sessionId, timestamps = the events' own seconds, never decreasing
    assert {info(event)["sessionId"] for event in events} == {call.session_id}
    stamps = [huawei.parse_time(info(event)["timestamp"]) for event in events]
    assert [stamp.timestamp() for stamp in stamps] == [math.floor(event.at) for event in events]  # type: ignore[union-attr]
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert ("  " in info(events[0])["timestamp"]) == ("  " in fee["callEndTime"])
    # stateCode/stateDesc only on the disconnect; digits only on collectInfo
    for event in events:
        assert ("stateCode" in info(event)) == (event.event_type == "disconnect")
        assert ("digitInfo" in info(event)) == (event.event_type == "collectInfo")
    disconnect = info(events[-1])
    assert disconnect["timestamp"] == fee["callEndTime"]
    assert huawei.parse_time(fee["callEndTime"]).timestamp() == math.floor(call.end)  # type: ignore[union-attr]
    assert disconnect["called"] == fee["calleeNum"] and disconnect["caller"] == fee["callerNum"]  # the A number
    if disconnect["stateCode"] != 0:
        assert fee["failTime"] == fee["callEndTime"]
    leg_a = [e for e in events if e.event_type in LEG_EVENTS and info(e)["called"] == fee["calleeNum"]]
    leg_b = [e for e in events if e.event_type in LEG_EVENTS and info(e)["called"] != fee["calleeNum"]]
    assert len(leg_a) + len(leg_b) == sum(t in LEG_EVENTS for t in types)
    assert all(info(e)["caller"] == fee["callerNum"] for e in leg_a)  # the number shown to A
    check_leg(leg_a, fee, A_FIELDS)
    assert fee["appKey"] == call.app_key == options.app_keys[call.index % len(options.app_keys)]
    if call.scenario == "callback":
        assert fee["serviceType"] == "002"
        if options.per_leg_status and "fwdStartTime" in fee:
            assert leg_b and all(info(e)["called"] == fee["fwdDstNum"] for e in leg_b)
            assert all(info(e)["caller"] == fee["fwdDisplayNum"] for e in leg_b)  # the number shown to B
            check_leg(leg_b, fee, B_FIELDS)
            assert min(e.at for e in leg_b) >= max(e.at for e in leg_a if e.event_type == "answer")
        else:
            assert not leg_b
        check_recording(call)
    else:
        assert not leg_b and not any(key.startswith("fwd") for key in fee)
        assert call.recording is None and call.no_recording == NOT_CALLBACK
    if "collectInfo" in types:
        assert call.scenario == "notify"
        assert types.index("answer") < types.index("collectInfo") < types.index("disconnect")


def check_leg(leg: list, fee: dict, fields: dict[str, str]) -> None:  # type: ignore[type-arg]
    """One leg's events, in order, each once; the CDR's time of each is the event's timestamp, and a time of an
    event that did not happen is absent or empty."""
    types = [event.event_type for event in leg]
    assert types == [t for t in LEG_EVENTS if t in types] and types[0] == "callout"
    for event_type, name in fields.items():
        if event_type in types:
            assert fee[name] == info(leg[types.index(event_type)])["timestamp"], name
        else:
            assert fee.get(name, "") == "", name


def check_recording(call: Call) -> None:
    fee = call.fee
    if call.recording is not None:
        talk = huawei.parse_time(fee["callEndTime"]) - huawei.parse_time(fee["fwdAnswerTime"])  # type: ignore[operator]
        assert fee["recordFlag"] == 1 and talk.total_seconds() >= 3 and call.no_recording is None
        return
    assert fee["recordFlag"] == 0
    if call.no_recording == UNDER_3S:
        talk = huawei.parse_time(fee["callEndTime"]) - huawei.parse_time(fee["fwdAnswerTime"])  # type: ignore[operator]
        assert talk.total_seconds() < 3
    else:
        assert call.no_recording in (NOT_ASKED, UNANSWERED)
        if call.no_recording == UNANSWERED:
            assert not fee.get("fwdAnswerTime")


@settings(max_examples=60, deadline=None)
@given(option_sets)
def test_every_call_timeline_is_ordered_and_agrees_with_its_cdr(options: CallOptions) -> None:
    for call in generate(options, 40):
        check_call(call, options)


def test_the_checks_cover_every_kind_of_call() -> None:
    # the property above only means something if the calls it saw include each shape
    options = CallOptions(seed=1, start=START, rate=50.0, app_keys=("a", "b"))
    calls = list(generate(options, 3000))
    for call in calls:
        check_call(call, options)
    shapes = Counter((call.scenario, call.outcome in ("answered", "short", "long"), call.no_recording)
                     for call in calls)
    for shape in (("callback", True, None), ("callback", True, UNDER_3S), ("callback", True, NOT_ASKED),
                  ("callback", False, UNANSWERED), ("notify", True, NOT_CALLBACK), ("verify", False, NOT_CALLBACK)):
        assert shapes[shape] > 0, shape
    assert any(e.event_type == "collectInfo" for call in calls for e in call.status)
    assert Counter(call.app_key for call in calls) == {"a": 1500, "b": 1500}
    two_answers = [c for c in calls if [e.event_type for e in c.status].count("answer") == 2]
    assert len(two_answers) > 500  # callbacks where both legs answered: four-plus events per leg pair


def test_a_broken_cdr_is_caught() -> None:
    # guards the property: a CDR whose answer time disagrees with the answer event must fail the check
    options = CallOptions(seed=2, start=START)
    call = next(c for c in generate(options, 100) if c.fee.get("fwdAnswerTime"))
    fee = dict(call.fee, fwdAnswerTime=call.fee["callOutAnswerTime"])
    broken = dataclasses.replace(call, fee=fee)
    try:
        check_call(broken, options)
    except AssertionError:
        return
    raise AssertionError("a CDR that disagrees with its status timeline passed the check")
