"""Delivery faults (pure): late and duplicated status pushes, withheld CDRs, CDRs merged per app."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from simulator_support import START

from voicecall.simulator import delivery, pushes
from voicecall.simulator.calls import CallOptions, generate
from voicecall.simulator.model import StatusEvent


def events(times: list[int]) -> list[StatusEvent]:
    return [StatusEvent(float(at), {"eventType": f"e{n}", "statusInfo": {"n": n}}) for n, at in enumerate(times)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=10), st.integers(0, 2**32),
       st.floats(0, 1), st.floats(0, 1))
def test_plan_delivers_every_event_once_and_late_ones_after_a_later_event(
        gaps: list[int], seed: int, late: float, duplicate: float) -> None:
    times = [sum(gaps[:n + 1]) for n in range(len(gaps))]
    timeline = events(times)
    plan = delivery.plan(timeline, random.Random(seed), late, duplicate)
    position = {id(item.event): index for index, item in enumerate(plan)}
    assert sorted(position.values()) == list(range(len(timeline)))  # each event once (copies are a count)
    assert [item.at for item in plan] == sorted(item.at for item in plan)  # pushed in time order
    assert not any(item.late and item.event is timeline[-1] for item in plan)  # the disconnect is never late
    on_time = [item.event for item in plan if not item.late]
    assert on_time == [event for event in timeline if any(event is e for e in on_time)]  # keep their order
    for index, item in enumerate(plan):
        assert item.copies in (1, 2)
        if item.late:
            later = timeline.index(item.event) + 1
            earlier_pushed = [p.event for p in plan[:index]]
            assert any(e is timeline[k] for e in earlier_pushed for k in range(later, len(timeline)))
            assert item.at >= item.event.at
        else:
            assert item.at == item.event.at
    if late == 0:
        assert [item.event for item in plan] == timeline
    if duplicate == 0:
        assert all(item.copies == 1 for item in plan)


def test_shares_are_honoured_over_many_calls() -> None:
    calls = list(generate(CallOptions(seed=4, start=START, rate=50.0), 4000))
    faults = delivery.Faults(late_share=0.2, duplicate_share=0.1, lost_cdr_share=0.05, seed=4)
    status = [item for item in pushes.timeline(calls, faults) if isinstance(item, pushes.StatusPush)]
    eligible = len(status) - len(calls)  # a call's last push is never late
    late = sum(item.late for item in status)
    assert late / eligible == pytest.approx(0.2, abs=0.015)
    assert sum(item.copies == 2 for item in status) / len(status) == pytest.approx(0.1, abs=0.01)
    # a late push really arrives after a later event of its call (later in the call's order; its timestamp is
    # later or, for events of one second, equal)
    position = {pushes.status_body(e.body): n for call in calls for n, e in enumerate(call.status)}
    seen: dict[str, list[int]] = {}
    for item in status:
        if item.late:
            assert max(seen[item.session_id]) > position[item.body]
            assert item.at >= item.event_at
        seen.setdefault(item.session_id, []).append(position[item.body])
    items = list(pushes.timeline(calls, faults))
    withheld = [s for item in items if isinstance(item, pushes.CdrWithheld) for s in item.session_ids]
    pushed = [s for item in items if isinstance(item, pushes.FeePush) for s in item.session_ids]
    assert len(withheld) / len(calls) == pytest.approx(0.05, abs=0.01)
    assert Counter(withheld + pushed) == Counter(call.session_id for call in calls)  # each CDR once, either way


def test_faults_change_the_delivery_not_the_calls() -> None:
    calls = list(generate(CallOptions(seed=5, start=START, rate=30.0), 500))

    def bodies(faults: delivery.Faults | None) -> tuple[Counter[bytes], list[object]]:
        out: Counter[bytes] = Counter()
        order = []
        for item in pushes.timeline(calls, faults):
            if isinstance(item, pushes.StatusPush):
                out[item.body] += 1
                order.append((item.session_id, item.body, item.copies, item.late))
        return out, order

    clean, clean_order = bodies(None)
    faulty = delivery.Faults(late_share=0.3, duplicate_share=0.2, seed=5)
    messy, messy_order = bodies(faulty)
    assert clean == messy  # the same events, each pushed once per plan entry
    assert clean_order != messy_order
    assert bodies(faulty)[1] == messy_order  # the same seed, the same plan


def test_late_pushes_include_answers_after_the_disconnect() -> None:
    # "never goes back from ended" needs this case: an answer that arrives after the call's disconnect
    calls = list(generate(CallOptions(seed=6, start=START, rate=30.0), 1000))
    after_end = 0
    arrived: dict[str, list[str]] = {}
    for item in pushes.timeline(calls, delivery.Faults(late_share=0.3, seed=6)):
        if isinstance(item, pushes.StatusPush):
            arrived.setdefault(item.session_id, []).append(item.event_type)
    for types in arrived.values():
        after_end += "answer" in types and types.index("disconnect") < len(types) - 1
    assert after_end > 10


def test_fee_pushes_are_merged_per_app_and_second() -> None:
    calls = list(generate(CallOptions(seed=7, start=START, rate=300.0, app_keys=("a", "b", "c")), 3000))
    app_of = {call.session_id: call.app_key for call in calls}
    fee = [item for item in pushes.timeline(calls) if isinstance(item, pushes.FeePush)]
    per_second_app: Counter[tuple[str, str]] = Counter()
    for item in fee:
        records = orjson.loads(item.body)["feeLst"]
        assert {record["appKey"] for record in records} == {item.app_key}
        assert {app_of[record["sessionId"]] for record in records} == {item.app_key}
        (end,) = {record["callEndTime"] for record in records}
        per_second_app[(end, item.app_key)] += len(records)
    expected = Counter((call.fee["callEndTime"], call.app_key) for call in calls)
    assert per_second_app == expected
    assert len(fee) >= len(expected)


def test_faults_refuse_shares_outside_0_1() -> None:
    with pytest.raises(ValueError):
        delivery.Faults(late_share=1.5)
    with pytest.raises(ValueError):
        delivery.Faults(lost_cdr_share=-0.1)
