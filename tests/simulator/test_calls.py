"""The pure call generator and timeline: determinism by seed, realistic mixes, the platform's field rules."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from simulator_support import START

from voicecall import huawei
from voicecall.simulator import pushes
from voicecall.simulator.calls import Call, CallOptions, generate, parse_mix
from voicecall.simulator.failures import CALLEE_FAILURES, CALLER_FAILURES, PLATFORM_FAILURES

# stateCode values of the reference's 通话挂机原因值 list and the Q850 / 拆线点 codes used.
REFERENCE_STATE_CODES = {0, 7001, 7002, 7003, 7004, 7108, 7109, 8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007, 8008,
                         8009, 8010, 8012, 8015, 8017, 8018, 8020, *range(8100, 8112)}
REFERENCE_Q850 = {0, 1, 2, 3, 16, 17, 18, 19, 20, 21, 22, 28, 31, 34, 127}
REFERENCE_UL_FAIL = {0, 100, *range(501, 511), 512, 513, 514, 515, 516, 517, 518, 519, 520, 541, 542, 550, 551, 552,
                     553, *range(400, 700)}


def options(**changes: object) -> CallOptions:
    return dataclasses.replace(CallOptions(seed=7, start=START, rate=20.0), **changes)  # type: ignore[arg-type]


def emissions_bytes(opts: CallOptions, count: int) -> list[tuple[str, float, bytes]]:
    out = []
    for item in pushes.timeline(generate(opts, count)):
        if isinstance(item, pushes.StatusPush | pushes.FeePush):
            out.append((type(item).__name__, item.at, item.body))
    return out


def seconds_between(later: object, earlier: object) -> int:
    end, begin = huawei.parse_time(later), huawei.parse_time(earlier)
    assert end is not None and begin is not None
    return int((end - begin).total_seconds())


def test_same_seed_same_pushes_byte_for_byte() -> None:
    first = emissions_bytes(options(), 300)
    second = emissions_bytes(options(), 300)
    assert first == second
    assert len(first) > 300


def test_other_seed_or_start_time_gives_other_calls() -> None:
    base = emissions_bytes(options(), 50)
    assert emissions_bytes(options(seed=8), 50) != base
    later = dataclasses.replace(options(), start=START.replace(hour=9))
    assert emissions_bytes(later, 50) != base


def test_generator_is_lazy_and_bounded_by_duration() -> None:
    calls = list(generate(options(rate=10.0), duration=3.0))
    assert len(calls) == 30
    assert calls[-1].start - calls[0].start == pytest.approx(2.9)
    endless = generate(options())
    assert [next(endless).index for _ in range(5)] == [0, 1, 2, 3, 4]


def test_mix_is_respected() -> None:
    calls = list(generate(options(mix=parse_mix("callback=0.6,notify=0.3,verify=0.1")), 3000))
    share = Counter(call.scenario for call in calls)
    assert 0.55 < share["callback"] / 3000 < 0.65
    assert 0.25 < share["notify"] / 3000 < 0.35
    assert 0.07 < share["verify"] / 3000 < 0.13
    only = list(generate(options(mix=parse_mix("verify=1")), 50))
    assert {call.scenario for call in only} == {"verify"}
    with pytest.raises(ValueError):
        parse_mix("callback=1,fax=1")


def test_realistic_outcomes_appear() -> None:
    calls = list(generate(options(), 3000))
    outcomes = Counter(call.outcome for call in calls)
    for kind in ("answered", "short", "long", "no-answer", "busy", "rejected", "caller-no-answer"):
        assert outcomes[kind] > 0, kind
    short = [call for call in calls if call.outcome == "short"]
    assert all(seconds_between(c.fee["callEndTime"], answer_time(c)) < 3 for c in short)
    long_calls = [call for call in calls if call.outcome == "long"]
    assert all(seconds_between(c.fee["callEndTime"], answer_time(c)) >= 600 for c in long_calls)
    assert all(c.scenario == "callback" for c in long_calls)


def answer_time(call: Call) -> str:
    return str(call.fee.get("fwdAnswerTime") or call.fee["callOutAnswerTime"])


def test_codes_come_from_the_reference_lists() -> None:
    for failure in (*CALLEE_FAILURES, *CALLER_FAILURES, *PLATFORM_FAILURES):
        assert failure.state_code in REFERENCE_STATE_CODES
        assert failure.q850 in REFERENCE_Q850
        assert failure.ul_fail_reason in REFERENCE_UL_FAIL
    for call in generate(options(), 1000):
        disconnect = call.status[-1].body["statusInfo"]
        assert disconnect["stateCode"] in REFERENCE_STATE_CODES
        assert call.fee.get("ulFailReason", 0) in REFERENCE_UL_FAIL
        if disconnect["stateCode"] != 0:
            assert "failTime" in call.fee and call.fee["sipStatusCode"] >= 400


def test_status_sequences_are_in_state_order() -> None:
    for call in generate(options(), 1000):
        types = [event.body["eventType"] for event in call.status]
        assert types[0] == "callout" and types[-1] == "disconnect"
        assert types.count("disconnect") == 1
        times = [event.at for event in call.status]
        assert times == sorted(times)
        texts = [huawei.parse_time(event.body["statusInfo"]["timestamp"]) for event in call.status]
        assert texts == sorted(texts)  # type: ignore[type-var]
        assert all(event.body["statusInfo"]["sessionId"] == call.session_id for event in call.status)
        if "answer" in types:
            assert types.index("alerting") < types.index("answer")
        if "collectInfo" in types:
            assert call.scenario == "notify"
            assert call.status[types.index("collectInfo")].body["statusInfo"]["digitInfo"]


def test_callback_fields_and_recordings_follow_the_platform_rules() -> None:
    calls = [call for call in generate(options(url_only_share=0.3), 2000) if call.scenario == "callback"]
    recorded = 0
    for call in calls:
        fee = call.fee
        assert fee["serviceType"] == "002"
        if "fwdAnswerTime" in fee:
            talk = seconds_between(fee["callEndTime"], fee["fwdAnswerTime"])
            assert seconds_between(fee["fwdAnswerTime"], fee["callOutAnswerTime"]) > 0
        else:
            talk = 0
        if fee["recordFlag"] == 1:
            recorded += 1
            assert talk >= 3  # the platform makes no recording of calls under 3 s
            assert call.recording is not None
            assert call.recording.size == min(58 + talk * 8000, 1 << 20)
            if call.recording.domain is None:
                assert fee["recordFileDownloadUrl"].endswith("/files/" + call.recording.file_name)
                assert "recordDomain" not in fee and "recordObjectName" not in fee
            else:
                assert fee["recordObjectName"] == call.recording.file_name
                assert fee["recordDomain"] == call.recording.domain
                assert fee["recordBucketName"]
        else:
            assert call.recording is None
            assert "recordObjectName" not in fee and "recordFileDownloadUrl" not in fee
    assert recorded > 50
    assert any(call.recording and call.recording.domain is None for call in calls)
    notify = [call for call in generate(options(), 300) if call.scenario != "callback"]
    assert all(call.fee["serviceType"] == "001" and call.recording is None for call in notify)
    assert all(not any(key.startswith("fwd") for key in call.fee) for call in notify)


def test_unconfirmed_forms_are_switchable() -> None:
    absent = list(generate(options(), 400))
    empty = list(generate(options(empty_times=True), 400))
    unanswered = [i for i, call in enumerate(absent) if "callOutAnswerTime" not in call.fee]
    assert unanswered
    assert all(empty[i].fee["callOutAnswerTime"] == "" for i in unanswered)
    single = list(generate(options(per_leg_status=False), 400))
    both_legs = [c for c in absent if c.scenario == "callback" and "fwdAnswerTime" in c.fee]
    assert all([e.body["eventType"] for e in c.status].count("answer") == 2 for c in both_legs)
    assert all([e.body["eventType"] for e in single[c.index].status].count("answer") == 1 for c in both_legs)
    doubled = list(generate(options(double_space_share=1.0), 20))
    assert all("  " in call.fee["callEndTime"] for call in doubled)


def test_session_ids_are_unique() -> None:
    ids = [call.session_id for call in generate(options(rate=1000.0), 5000)]
    assert len(set(ids)) == len(ids)
