"""The calls core without Kafka: the record after each kind of input, duplicates, ties, rejections, timers and
restoring from its own records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from calls_helpers import (
    TOPICS,
    billing,
    calls,
    core,
    fee_unique,
    feed,
    final,
    inputs_of,
    published,
    record,
    status_raw,
    stored,
)

from voicecall.calls.call import Call
from voicecall.calls.core import CallsCore
from voicecall.runtime import cloudevents
from voicecall.simulator.model import Call as SimCall

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def pick(scenario: str, outcome: str | None = None, recorded: bool | None = None, count: int = 400) -> SimCall:
    for call in calls(count, seed=11, start=START):
        if call.scenario != scenario or (outcome is not None and call.outcome != outcome):
            continue
        if recorded is None or (call.recording is not None) == recorded:
            return call
    raise AssertionError(f"no {scenario} {outcome} call among {count}")


def value(out: Any) -> dict[str, Any]:
    return orjson.loads(out.value)  # type: ignore[no-any-return]


def test_a_recorded_callback_after_each_input() -> None:
    call = pick("callback", "answered", recorded=True)
    target = core()
    states, legs_seen = [], []
    for raw in [status_raw(e) for e in call.status]:
        (out,) = feed(target, [raw])
        states.append(value(out)["state"])
        legs_seen.append([(leg["leg"], leg["state"]) for leg in value(out)["legs"]])
        assert value(out)["cdr"] == {"status": "pending"} and value(out)["complete"] is False
    assert states == ["initiated", "ringing", "answered", "answered", "answered", "answered", "ended"]
    assert legs_seen[2] == [("A", "answered")]
    assert legs_seen[3] == [("A", "answered"), ("B", "initiated")]
    assert legs_seen[5] == [("A", "answered"), ("B", "answered")]
    assert legs_seen[6] == [("A", "ended"), ("B", "ended")]
    record_ = final(target, call.session_id)
    assert [e.get("leg") for e in record_["events"]] == ["A", "A", "A", "B", "B", "B", None]
    assert record_["events"][-1]["eventType"] == "disconnect" and record_["events"][-1]["stateCode"] == 0
    assert record_["endReason"] == {"stateCode": 0, "stateDesc": "The user releases the call."}
    assert record_["recording"] == {"status": "pending"}  # not known before the CDR
    (out,) = feed(target, [fee_unique(call)])
    cdr = value(out)["cdr"]
    assert cdr["status"] == "received" and cdr["calleeNum"] == value(out)["legs"][0]["called"]
    assert cdr["fwdDstNum"] == value(out)["legs"][1]["called"] and cdr["recordFlag"] == 1
    assert value(out)["appKey"] == call.app_key and value(out)["serviceType"] == "002"
    assert value(out)["recording"] == {"status": "pending"}  # the CDR says there is one to fetch
    (out,) = feed(target, [billing(call)])
    assert value(out)["billing"]["totalBilledMinutes"] >= 1 and value(out)["complete"] is False
    assert value(out)["updatedAt"] == value(out)["endedAt"][:-1] + ".000Z"  # the newest input: the CDR's end
    saved = stored(call)
    (out,) = feed(target, [saved])
    assert value(out)["recording"]["status"] == "stored" and value(out)["recording"]["uri"].startswith("s3://")
    assert value(out)["complete"] is True
    assert value(out)["updatedAt"] == dict(saved[3])["ce_time"].decode()  # stored later than the call ended
    headers = dict(out.headers)
    assert headers["ce_type"] == cloudevents.TYPE_CALL.encode() and headers["ce_source"] == b"/voicecall/calls"
    assert headers["ce_time"].decode() == value(out)["updatedAt"]
    assert out.key == call.session_id.encode() and out.topic == TOPICS.calls


def test_a_notification_collects_digits_and_needs_no_recording() -> None:
    call = next(c for c in calls(400, seed=11, start=START)
                if c.scenario == "notify" and any(e.event_type == "collectInfo" for e in c.status))
    target = core()
    feed(target, inputs_of(call))
    record_ = final(target, call.session_id)
    digits = next(e.body["statusInfo"]["digitInfo"] for e in call.status if e.event_type == "collectInfo")
    assert record_["digits"] == digits
    assert [leg["leg"] for leg in record_["legs"]] == ["A"]
    assert record_["recording"] == {"status": "none", "why": "not-callback"}
    assert record_["complete"] is True and record_["state"] == "ended"


@pytest.mark.parametrize(("outcome", "why"), [("short", "under-3s"), ("busy", "not-answered")])
def test_callbacks_without_recording_say_why(outcome: str, why: str) -> None:
    call = next(c for c in calls(3000, seed=5, start=START, record_share=1.0)
                if c.scenario == "callback" and c.outcome == outcome and c.fee.get("callOutAnswerTime"))
    target = core()
    feed(target, inputs_of(call))
    assert final(target, call.session_id)["recording"] == {"status": "none", "why": why}
    assert final(target, call.session_id)["complete"] is True


def test_a_callback_not_asked_to_record() -> None:
    call = next(c for c in calls(400, seed=11, start=START, record_share=0.0)
                if c.scenario == "callback" and c.outcome == "answered")
    target = core()
    feed(target, inputs_of(call))
    assert final(target, call.session_id)["recording"] == {"status": "none", "why": "not-recorded"}


def test_a_failed_recording_settles_the_call() -> None:
    call = pick("callback", "answered", recorded=True)
    target = core()
    feed(target, [*inputs_of(call)[:-1]])
    assert final(target, call.session_id)["complete"] is False
    failed = orjson.dumps({"sessionId": call.session_id, "reason": "not-found", "attempts": 3})
    (out,) = feed(target, [("recording.failed", call.session_id.encode(), failed, [])])
    assert value(out)["recording"] == {"status": "failed", "reason": "not-found"}
    assert value(out)["complete"] is True


def test_duplicates_change_nothing() -> None:
    call = pick("callback", "answered", recorded=True)
    target = core()
    raws = inputs_of(call)
    assert len(feed(target, raws)) == len(raws)  # each distinct input changes the record once
    assert feed(target, raws) == []  # the same inputs again: nothing
    before = target.snapshot()
    assert feed(target, [raws[2], raws[-1]]) == [] and target.snapshot() == before


def test_out_of_order_follows_event_time_and_never_leaves_ended() -> None:
    call = pick("callback", "answered", recorded=False)
    raws = [status_raw(e) for e in call.status]
    target = core()
    (out,) = feed(target, [raws[-1]])  # the disconnect first
    assert value(out)["state"] == "ended" and value(out)["endedAt"]
    for raw in reversed(raws[:-1]):
        (out,) = feed(target, [raw])
        assert value(out)["state"] == "ended"
    timeline = [(e["timestamp"], e["eventType"]) for e in final(target, call.session_id)["events"]]
    assert timeline == sorted(timeline, key=lambda t: t[0]) and timeline[-1][1] == "disconnect"
    straight = core()
    feed(straight, raws)
    assert final(target, call.session_id) == final(straight, call.session_id)


def push(event_type: str, second: int, **fields: Any) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    info = {"sessionId": "s1", "timestamp": (START + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S"),
            **fields}
    return ("status.raw", b"s1", orjson.dumps(info),
            cloudevents.headers(cloudevents.TYPE_STATUS + event_type, "/voicecall/ingress"))


def test_ties_within_a_second_follow_the_call() -> None:
    a, b, shown = {"called": "+861", "caller": "+860"}, {"called": "+862", "caller": "+860"}, "+860"
    raws = [push("callout", 0, **a), push("alerting", 1, **a), push("answer", 3, **a), push("callout", 3, **b),
            push("alerting", 4, **b), push("answer", 6, **b), push("disconnect", 6, stateCode=0, **a)]
    for order in (raws, list(reversed(raws)), raws[3:] + raws[:3]):
        target = core()
        feed(target, order)
        record_ = final(target, "s1")
        assert [(e["eventType"], e.get("leg")) for e in record_["events"]] == [
            ("callout", "A"), ("alerting", "A"), ("answer", "A"), ("callout", "B"), ("alerting", "B"),
            ("answer", "B"), ("disconnect", None)]
        assert record_["caller"] == shown and record_["called"] == "+861"
        assert [leg["answerTime"] for leg in record_["legs"]] == [record_["events"][2]["timestamp"],
                                                                   record_["events"][5]["timestamp"]]


def test_a_zero_second_call_and_digits_with_the_disconnect() -> None:
    a = {"called": "+861", "caller": "+860"}
    raws = [push("disconnect", 5, stateCode=0, **a), push("collectInfo", 5, digitInfo="1"), push("answer", 5, **a),
            push("callout", 0, **a)]
    target = core()
    feed(target, raws)
    assert [e["eventType"] for e in final(target, "s1")["events"]] == ["callout", "answer", "collectInfo",
                                                                       "disconnect"]


def test_only_the_cdr_and_billing_make_a_complete_call() -> None:
    call = pick("notify", "answered")
    target = core()
    feed(target, [fee_unique(call), billing(call)])
    record_ = final(target, call.session_id)
    assert record_["state"] == "ended" and record_["events"] == [] and record_["complete"] is True
    assert record_["legs"] == [{"leg": "A", "called": call.fee["calleeNum"], "caller": call.fee["callerNum"],
                                "state": "ended", "answerTime": record_["cdr"]["callOutAnswerTime"]}]
    assert record_["endedAt"] == record_["cdr"]["callEndTime"] and "endReason" not in record_


def test_billing_before_the_cdr_gives_the_same_record() -> None:
    call = pick("callback", "answered", recorded=True)
    raws = inputs_of(call)
    first, second = core(), core()
    feed(first, raws)
    feed(second, [raws[-2], raws[-1], *raws[:-2]])  # billing and recording before the status pushes and CDR
    assert final(first, call.session_id) == final(second, call.session_id)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "not-json"), (b"[1]", "not-an-object"), (None, "empty-value"),
    (b'{"timestamp": "2026-01-01 00:00:00"}', "missing-session-id"),
    (b'{"sessionId": "s1", "timestamp": "01/01/2026"}', "bad-time"),
    (b'{"sessionId": "s1"}', "bad-time"),
])
def test_unreadable_status_records_are_deadlettered(raw: bytes | None, reason: str) -> None:
    target = core()
    headers = cloudevents.headers(cloudevents.TYPE_STATUS + "callout", "/t")
    (out,) = target.process(record("status.raw", b"s1", raw, headers, offset=7))
    dead = orjson.loads(out.value)
    assert out.topic == TOPICS.deadletter and dead["reason"] == reason and dead["stage"] == "calls"
    assert dead["origin"] == {"topic": TOPICS.status, "partition": 0, "offset": 7}
    assert len(target) == 0


def test_a_status_record_without_event_type_is_deadlettered() -> None:
    (out,) = core().process(record("status.raw", b"s1", b'{"sessionId": "s1", "timestamp": "2026-01-01 00:00:00"}'))
    assert orjson.loads(out.value)["reason"] == "invalid-shape"


def test_missing_cdr_after_the_grace_and_a_late_cdr_completes_it() -> None:
    call = pick("callback", "answered", recorded=False)
    target = core(grace=600)
    feed(target, [status_raw(e) for e in call.status])
    ended = call.end_second
    assert target.tick(ended + 599) == []
    (out,) = target.tick(ended + 601)
    assert value(out)["cdr"] == {"status": "missing", "since": datetime.fromtimestamp(ended + 600, UTC)
                                 .strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    assert value(out)["updatedAt"] == value(out)["cdr"]["since"] and value(out)["complete"] is False
    assert target.tick(ended + 700) == []  # once
    (out,) = feed(target, [fee_unique(call)])
    assert value(out)["cdr"]["status"] == "received"
    feed(target, [billing(call)])
    assert final(target, call.session_id)["complete"] is True
    assert target.tick(ended + 100_000) == []


def test_a_call_leaves_after_the_retention_with_a_tombstone() -> None:
    call = pick("notify", "answered")
    target = core(grace=60, retention=3600)
    feed(target, inputs_of(call))
    updated = final(target, call.session_id)["updatedAt"]
    at = datetime.fromisoformat(updated).timestamp()
    assert target.tick(at + 3000) == []
    (out,) = target.tick(at + 3600 + 37)  # the retention wheel's slots are 36 s wide
    assert out.value is None and out.key == call.session_id.encode() and out.headers == []
    assert len(target) == 0 and target.nbytes == 0


def restored(outputs: list[Any], **kwargs: float) -> CallsCore:
    again = core(**kwargs)
    for offset, out in enumerate(o for o in outputs if o.topic == TOPICS.calls):
        again.restore(record("calls", out.key, out.value, out.headers, offset))
    return again


def test_restoring_from_the_calls_records_gives_the_same_state_and_timers() -> None:
    many = calls(200, seed=4, start=START)
    target = core(grace=600)
    outputs = []
    for call in many:  # a tenth without CDR: their missing timers must survive the restore
        outputs += feed(target, inputs_of(call, cdr=call.index % 10 != 0))
    again = restored(outputs, grace=600)
    assert again.snapshot() == target.snapshot()  # the same facts as the core that published them
    last = {out.key.decode(): out.value for out in outputs}
    for call in many:  # a call loaded from its record, or from its packed facts, renders that record again
        assert orjson.dumps(Call.load(last[call.session_id]).render()) == last[call.session_id]
        assert published(target, call.session_id) == last[call.session_id]
        assert len(target.snapshot()[call.session_id]) < 0.6 * len(last[call.session_id])
    later = max(c.end for c in many) + 601
    assert sorted(o.key for o in again.tick(later)) == sorted(o.key for o in target.tick(later))


def test_restore_ignores_replay_copies_and_refuses_foreign_records() -> None:
    call = pick("notify", "answered")
    target = core()
    (out, *_) = feed(target, inputs_of(call))
    again = core()
    again.restore(record("calls", out.key, out.value, [*out.headers, ("voicecall-replay-id", b"r1")]))
    assert len(again) == 0
    with pytest.raises(ValueError):
        again.restore(record("calls", b"x", b"\x00\x01", []))
    with pytest.raises(ValueError):
        again.restore(record("calls", None, out.value, out.headers))
    again.restore(record("calls", out.key, out.value, out.headers))
    again.restore(record("calls", out.key, None, []))  # a tombstone removes it
    assert len(again) == 0


def test_calls_packed_and_unpacked_on_the_way_give_the_same_records() -> None:
    many = calls(300, seed=8, start=START)
    raws = [raw for call in many for raw in inputs_of(call)]
    roomy = core()
    expected = feed(roomy, raws)
    tight = CallsCore(0, TOPICS, grace=7 * 3600.0, retention=14 * 86400.0, hot=8)  # most calls packed in between
    assert [(o.key, o.value) for o in feed(tight, raws)] == [(o.key, o.value) for o in expected]
    assert len(tight.hot) == 8 and len(tight.calls) == len(many) - 8 and tight.nbytes > 0
    assert tight.snapshot() == roomy.snapshot()
