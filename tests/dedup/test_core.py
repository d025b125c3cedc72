"""The pure dedup core: decisions, outputs and changelog records, without Kafka."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall.dedup import core as dedup

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
CDR: dict[str, Any] = {
    "sessionId": "1200_366_0_20161228102743@callenabler.home1.com", "serviceType": "002",
    "callOutStartTime": "2023-11-14 22:10:00", "callOutAnswerTime": "2023-11-14  22:10:05",
    "callEndTime": "2023-11-14 22:13:20", "fwdAnswerTime": "", "recordFlag": 0,
}


def record(doc: Any, offset: int = 0, received: int = T0 + 5, headers: list[tuple[str, bytes]] | None = None
           ) -> ConsumerRecord:
    value = doc if isinstance(doc, bytes) or doc is None else orjson.dumps(doc)
    key = doc.get("sessionId", "").encode() if isinstance(doc, dict) and isinstance(doc.get("sessionId"), str) \
        else None
    return ConsumerRecord("p.fee.raw", 0, offset, received * 1000, 0, key, value, None, 0, 0,
                          headers if headers is not None else [("ce_id", f"id{offset}".encode())])


def make(window: float = 7 * 86400) -> dedup.DedupCore:
    return dedup.DedupCore(0, "p.fee.unique", "p.deadletter", "p.dedup.changelog", window)


def topics_of(outputs: list[Any]) -> list[str]:
    return [o.topic for o in outputs]


def test_first_passes_unchanged_with_changelog_entry() -> None:
    core = make()
    rec = record(CDR)
    outputs = core.process(rec)
    assert topics_of(outputs) == ["p.fee.unique", "p.dedup.changelog"]
    assert outputs[0].value == rec.value and outputs[0].key == rec.key and outputs[0].headers == rec.headers
    fp, moment = dedup.decode_entry(outputs[1].value)
    assert moment == T0 and fp == dedup.fingerprint(CDR)
    assert outputs[1].key == dedup.id_hash(CDR["sessionId"]).to_bytes(8, "big")


def test_repushes_are_dropped_even_with_other_whitespace_key_order_and_empty_times() -> None:
    core = make()
    assert len(core.process(record(CDR))) == 2
    variant = dict(reversed(list(CDR.items())))
    variant["callEndTime"] = "2023-11-14  22:13:20"
    del variant["fwdAnswerTime"]  # "" and absent both mean "not answered"
    for i in range(6):
        result = core.evaluate(record(variant, offset=i + 1, received=T0 + 3600 * (i + 1)))
        assert result.outputs == [] and result.outcome == dedup.DUPLICATE


def test_conflict_goes_to_deadletter_with_both_fingerprints() -> None:
    core = make()
    core.process(record(CDR))
    changed = dict(CDR, callEndTime="2023-11-14 22:13:50")
    outputs = core.process(record(changed, offset=1))
    assert topics_of(outputs) == ["p.deadletter"]
    value = orjson.loads(outputs[0].value)
    assert value["reason"] == "conflicting-duplicate" and value["stage"] == "dedup"
    assert value["fingerprints"] == {"first": f"{dedup.fingerprint(CDR):016x}",
                                     "later": f"{dedup.fingerprint(changed):016x}"}
    assert value["payload"] == changed and value["origin"] == {"topic": "p.fee.raw", "partition": 0, "offset": 1}
    assert core.process(record(CDR, offset=2)) == []  # the first one is still the one remembered


def test_records_without_session_id_or_json_are_deadlettered() -> None:
    core = make()
    for doc, reason in ((dict(CDR, sessionId=""), "missing-session-id"), ({"x": 1}, "missing-session-id"),
                        (dict(CDR, sessionId=5), "missing-session-id"), (b"not json", "not-json"),
                        (b"[1]", "not-an-object"), (None, "empty-value")):
        result = core.evaluate(record(doc))
        assert topics_of(result.outputs) == ["p.deadletter"], doc
        assert orjson.loads(result.outputs[0].value)["reason"] == reason
        assert (result.outcome, result.reason) == (dedup.REJECTED, reason)
    assert len(core.state) == 0


def test_the_shell_counts_the_outcomes_the_core_returns() -> None:
    from voicecall.dedup import metrics

    def count(tally: Any, *labels: str) -> int:
        return int(tally.values.get(labels, 0))

    tallies = (metrics.UNIQUES, metrics.DUPLICATES, metrics.CONFLICTS, metrics.OUTSIDE)
    before = [count(t) for t in tallies] + [count(metrics.REJECTED, "not-json")]
    metered = metrics.MeteredCore(make())
    for n, doc in enumerate((CDR, CDR, dict(CDR, callEndTime="2023-11-14 22:13:50"), b"{oops")):
        metered.process(record(doc, offset=n))
    after = [count(t) for t in tallies] + [count(metrics.REJECTED, "not-json")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 0, 1]


def test_window_expiry_tombstones_and_passes_again() -> None:
    core = make(window=60)
    old = dict(CDR, sessionId="old", callEndTime="2023-11-14 22:00:00")
    assert len(core.process(record(old))) == 2
    tombstones, expired = [], 0
    for i in range(100):  # newer calls move the clock past the window and the sweep comes round
        result = core.evaluate(record(dict(CDR, sessionId=f"new{i}"), offset=i + 1))
        tombstones += [o for o in result.outputs if o.topic == "p.dedup.changelog" and o.value is None]
        expired += result.expired
    assert expired == 1
    assert [t.key for t in tombstones] == [dedup.id_hash("old").to_bytes(8, "big")]
    assert core.state.get(dedup.id_hash("old")) is None and len(core.state) == 100  # gone from the state too
    result = core.evaluate(record(old, offset=200))
    assert topics_of(result.outputs) == ["p.fee.unique"]  # outside the window: passes, not remembered
    assert (result.outcome, result.outside, result.expired) == (dedup.UNIQUE, True, 0)


def test_expired_but_unswept_entry_is_not_a_duplicate() -> None:
    core = make(window=60)
    early = dict(CDR, sessionId="a", callEndTime="2023-11-14 22:00:00")
    core.process(record(early))
    core.process(record(dict(CDR, sessionId="b")))  # clock → 22:13:20; "a" is 800 s old
    again = dict(early, callEndTime="2023-11-14 22:13:00")  # same id, new content, inside the window
    outputs = core.process(record(again, offset=5))
    assert topics_of(outputs)[:2] == ["p.fee.unique", "p.dedup.changelog"]


def test_future_call_end_is_bounded_by_receive_time() -> None:
    core = make(window=7200)
    core.process(record(dict(CDR, sessionId="x", callEndTime="2099-01-01 00:00:00")))
    assert core.clock == T0 + 5 + 3600
    assert core.process(record(dict(CDR, sessionId="y"), offset=1))[0].topic == "p.fee.unique"
    assert len(core.state) == 2  # "y" (T0) is within two hours of the bounded clock, not 76 years


def test_times_past_the_state_field_are_clamped_not_raised() -> None:
    # A producer may set any timestamp; the state stores 4-byte times. Raising half-way through State.put would
    # leave a key behind in a core that must be unchanged when it raises.
    core = make()
    year_2200 = 7_258_118_400
    doc = dict(CDR, callEndTime="2200-01-01 00:00:00")
    outputs = core.process(record(doc, received=year_2200))
    assert topics_of(outputs) == ["p.fee.unique", "p.dedup.changelog"]
    assert dedup.decode_entry(outputs[1].value)[1] == dedup.MAX_MOMENT
    no_end = {k: v for k, v in CDR.items() if k != "callEndTime"} | {"sessionId": "other"}
    outputs = core.process(record(no_end, offset=1, headers=[("voicecall_received", b"2200-01-01T00:00:00Z")]))
    assert dedup.decode_entry(outputs[1].value)[1] == dedup.MAX_MOMENT and len(core.state) == 2


def test_receive_header_stands_in_for_missing_call_end() -> None:
    core = make()
    doc = {k: v for k, v in CDR.items() if k != "callEndTime"}
    outputs = core.process(record(doc, headers=[("voicecall_received", b"2023-11-14T22:20:00.123Z")]))
    assert dedup.decode_entry(outputs[1].value)[1] == T0 + 400


def test_restore_rebuilds_state_and_clock() -> None:
    first = make(window=60)
    changelog = []
    docs = [dict(CDR, sessionId=f"s{i}", callEndTime=f"2023-11-14 22:{i:02d}:00") for i in range(20)]
    for i, doc in enumerate(docs):
        changelog += [o for o in first.process(record(doc, offset=i)) if o.topic == "p.dedup.changelog"]
    second = make(window=60)
    for i, out in enumerate(changelog):
        second.restore(ConsumerRecord("p.dedup.changelog", 0, i, 0, 0, out.key, out.value, None, 0, 0, []))
    assert sorted(second.state.items()) == sorted(first.state.items())
    assert second.clock == first.clock
    def decisions(outputs: list[Any]) -> list[Any]:  # sweep tombstones depend on the sweep cursor, not the data
        return [(o.topic, o.key, o.value) for o in outputs if o.value is not None]

    for i, doc in enumerate(docs):
        assert decisions(first.process(record(copy.deepcopy(doc), offset=100 + i))) == \
            decisions(second.process(record(copy.deepcopy(doc), offset=100 + i)))


def test_record_nested_too_deep_to_fingerprint_is_deadlettered_not_raised() -> None:
    # orjson reads 1024 levels but writes only 254: such a record must not reach the shell as an exception (whose
    # own deadletter would fail to encode the same document again and stop the stage on every restart).
    deep = b'{"sessionId":"s","callEndTime":"2023-11-14 22:13:20","userData":' + b"[" * 300 + b"]" * 300 + b"}"
    core = make()
    outputs = core.process(record(deep))
    assert topics_of(outputs) == ["p.deadletter"]
    value = orjson.loads(outputs[0].value)
    assert value["reason"] == "invalid-shape" and value["payload"] == deep.decode()
    assert len(core.state) == 0


def test_record_without_cloudevents_headers_gets_them() -> None:
    outputs = make().process(record(CDR, headers=[]))
    headers = dict(outputs[0].headers)
    assert headers["ce_type"] == b"com.huaweicloud.voicecall.fee"
    assert headers["ce_id"].startswith(CDR["sessionId"].encode())


def test_epoch_seconds_agrees_with_the_shared_time_parser() -> None:
    import random

    from voicecall import huawei

    rng = random.Random(3)
    for _ in range(2000):
        moment = rng.randrange(0, 4_000_000_000)
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))
        assert dedup.epoch_seconds(text) == moment
        assert dedup.epoch_seconds(text.replace(" ", "  ")) == moment
    parsed = huawei.parse_time("2024-02-29 23:59:59")
    assert parsed is not None and dedup.epoch_seconds("2024-02-29 23:59:59") == int(parsed.timestamp())
    for bad in ("", None, "2023-13-01 00:00:00", "2023-02-30 00:00:00", "yesterday", 17):
        assert dedup.epoch_seconds(bad) is None
    assert dedup.epoch_seconds("2023-02-29 00:00:00") is None and dedup.epoch_seconds("2100-02-29 00:00:00") is None
    assert dedup.epoch_seconds("2000-02-29 00:00:00") == 951782400
