"""Property tests: a call's final record depends on which inputs arrived, never on their order, their repeats or a
restart in between (restored from the records published so far)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from calls_helpers import Raw, calls, core, feed, inputs_of, published, record
from hypothesis import HealthCheck, given, settings, strategies as st

from voicecall.calls.call import MAX_EVENTS
from voicecall.calls.core import CallsCore
from voicecall.runtime import cloudevents

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@cache
def sample() -> list[list[Raw]]:
    """Calls of every scenario and outcome, with duplicated and late status pushes left to the test."""
    return [inputs_of(call) for call in calls(120, seed=21, start=START, record_share=0.7)]


def reference(raws: list[Raw]) -> bytes:
    target = core()
    feed(target, raws)
    (session_id,) = target.snapshot()
    return published(target, session_id)


def with_repeats(data: st.DataObject, raws: list[Raw]) -> list[Raw]:
    repeats = data.draw(st.lists(st.sampled_from(raws), max_size=len(raws)), label="repeats")
    return data.draw(st.permutations(raws + repeats), label="order")


def restart(target: CallsCore, outputs: list[Any]) -> CallsCore:
    again = core()
    for offset, out in enumerate(outputs):
        again.restore(record("calls", out.key, out.value, out.headers, offset))
    assert again.snapshot() == target.snapshot()
    return again


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_order_with_repeats_gives_the_same_record(data: st.DataObject) -> None:
    raws = data.draw(st.sampled_from(sample()), label="call")
    expected = reference(raws)
    fed = with_repeats(data, raws)
    split = data.draw(st.integers(0, len(fed)), label="restart after")
    target = core()
    outputs = feed(target, fed[:split])
    target = restart(target, outputs)
    outputs += feed(target, fed[split:])
    (session_id,) = target.snapshot()
    assert published(target, session_id) == expected == outputs[-1].value
    # Each distinct input changed the record exactly once, whatever came twice.
    assert len(outputs) == len(raws)
    assert len({o.value for o in outputs}) == len(outputs)


def pushes(count: int) -> list[Raw]:
    """A pathological call: more distinct status events than the timeline shows (alerting for many numbers)."""
    out = []
    base = START.timestamp()
    for i in range(count):
        event_type = "callout" if i == 0 else "disconnect" if i == count - 1 else ("alerting", "answer")[i % 2]
        info: dict[str, Any] = {"sessionId": "many", "called": f"+86{i % 7:03d}", "caller": "+8600",
                                "timestamp": datetime.fromtimestamp(base + i // 3, UTC).strftime("%Y-%m-%d %H:%M:%S")}
        if event_type == "disconnect":
            info["stateCode"] = 0
        headers = cloudevents.headers(cloudevents.TYPE_STATUS + event_type, "/voicecall/ingress")
        out.append(("status.raw", b"many", orjson.dumps(info), headers))
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_timeline_over_the_cap_keeps_the_same_events_and_counts_the_rest_once(data: st.DataObject) -> None:
    raws = pushes(data.draw(st.integers(MAX_EVENTS + 1, MAX_EVENTS + 12), label="events"))
    expected = reference(raws)
    target = core()
    fed = with_repeats(data, raws)
    split = data.draw(st.integers(0, len(fed)), label="restart after")
    outputs = feed(target, fed[:split])
    target = restart(target, outputs)
    feed(target, fed[split:])
    (session_id,) = target.snapshot()
    value = published(target, session_id)
    assert value == expected
    shown = orjson.loads(value)
    assert len(shown["events"]) == MAX_EVENTS and shown["eventsDropped"] == len(raws) - MAX_EVENTS
    assert shown["state"] == "ended"  # the disconnect counts although the timeline has no room for it
    assert [e["timestamp"] for e in shown["events"]] == sorted(e["timestamp"] for e in shown["events"])


def test_the_timeline_keeps_the_oldest_events() -> None:
    raws = pushes(MAX_EVENTS + 5)
    shown = orjson.loads(reference(list(reversed(raws))))
    stamps = sorted(orjson.loads(raw[2])["timestamp"] for raw in raws)[:MAX_EVENTS]
    assert sorted(e["timestamp"].replace("T", " ")[:-1] for e in shown["events"]) == stamps
    assert shown["events"][0]["timestamp"] == START.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert shown["endReason"] == {"stateCode": 0, "stateDesc": None}  # from the disconnect beyond the cap
