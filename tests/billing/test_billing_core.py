"""The billing core: fee.unique record in, billing or deadletter output out, byte-identical every time."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import billing_samples as samples
import jsonschema
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings, strategies as st

from voicecall.billing import core
from voicecall.billing.tariff import Tariff
from voicecall.runtime import cloudevents
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "billing.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def record(value: Any, *, offset: int = 7, raw: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
           ) -> ConsumerRecord[bytes, bytes]:
    body = raw if raw is not None else (None if value is None else orjson.dumps(value))
    key = value.get("sessionId", "k").encode() if isinstance(value, dict) and isinstance(
        value.get("sessionId"), str) else b"k"
    return ConsumerRecord("t.fee.unique", 2, offset, 1_700_000_000_123, 0, key, body, None, len(key),
                          len(body or b""), headers or [])


def make(rates: dict[str, int] | None = None) -> core.BillingCore:
    return core.BillingCore(billing_topic="t.billing", deadletter_topic="t.deadletter",
                            tariff=Tariff("CNY", rates if rates is not None else {"001": 18, "002": 18}))


def only(outputs: list[Record]) -> tuple[Record, dict[str, Any]]:
    assert len(outputs) == 1
    out = outputs[0]
    assert out.value is not None
    return out, orjson.loads(out.value)


def test_f2_billing_record() -> None:
    out, value = only(make().process(record(samples.F2)))
    assert out.topic == "t.billing"
    assert out.key == b"1200_366_0_20161228102743@callenabler.home1.com"
    assert value == {
        "sessionId": "1200_366_0_20161228102743@callenabler.home1.com",
        "serviceType": "002",
        "serviceTypeInferred": True,
        "answered": True,
        "legs": [
            {"leg": "A", "answered": True, "answerTime": "2016-12-26T01:16:31Z", "endTime": "2016-12-26T01:19:46Z",
             "seconds": 195, "billedMinutes": 4},
            {"leg": "B", "answered": True, "answerTime": "2016-12-26T01:16:45Z", "endTime": "2016-12-26T01:19:46Z",
             "seconds": 181, "billedMinutes": 4},
        ],
        "totalSeconds": 376,
        "totalBilledMinutes": 8,
        "callEndTime": "2016-12-26T01:19:46Z",
        "currency": "CNY",
        "rate": 18,
        "amount": 144,  # 8 minutes x 18 fen
        "amountDecimal": "1.44",
        "ruleVersion": "1+CNY:001=18,002=18",
        "appKey": "cJU9QxBt53ZytKo9X8C35Z5c6pvi",
        "spId": "dial010314322991",
        "icid": "9c2012a5bcb2721681009cb6c245fdc3.3663053204.1117803.14",
    }
    VALIDATOR.validate(value)
    # Integers of minor units, never floats (144 == 144.0 in Python, so look at the bytes).
    assert b'"amount":144,' in out.value and b'"rate":18,' in out.value and b'"amountDecimal":"1.44"' in out.value
    # Sorted keys: the bytes do not depend on the order the code built the dict in.
    assert out.value == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert cloudevents.header(out.headers, "ce_type") == "voicecall.billing.computed"
    assert cloudevents.header(out.headers, "ce_source") == "/voicecall/billing"
    assert cloudevents.header(out.headers, "ce_time") == "2016-12-26T01:19:46Z"
    assert cloudevents.header(out.headers, "ce_specversion") == "1.0"
    assert cloudevents.header(out.headers, "content-type") == "application/json"


def test_notification_and_unanswered_records_fit_the_schema() -> None:
    for fee, minutes, amount in [
        (samples.notification(), 1, 18),
        (samples.notification(callOutAnswerTime="", callEndTime=...), 0, 0),
        (samples.F5, 1, 18),
        ({**samples.F5, "fwdAnswerTime": ""}, 0, 0),
    ]:
        _, value = only(make().process(record(fee)))
        VALIDATOR.validate(value)
        assert value["totalBilledMinutes"] == minutes and value["amount"] == amount
        assert value["answered"] is (minutes > 0)


def test_ce_time_falls_back_to_the_input_record() -> None:
    fee = samples.notification(callOutAnswerTime=..., callEndTime=...)
    out, value = only(make().process(record(fee, headers=[("ce_time", b"2019-01-24T04:01:08.000Z")])))
    assert value["callEndTime"] is None
    assert cloudevents.header(out.headers, "ce_time") == "2019-01-24T04:01:08.000Z"
    out, _ = only(make().process(record(fee)))
    assert cloudevents.header(out.headers, "ce_time") == "2023-11-14T22:13:20.123Z"  # the record's timestamp


def test_service_type_without_rate_has_no_amount_rather_than_zero() -> None:
    out, value = only(make({"001": 18}).process(record({**samples.F5, "serviceType": "004"})))
    assert out.topic == "t.billing"
    assert value["amount"] is None and value["rate"] is None and value["amountDecimal"] is None
    assert value["ruleVersion"] == "1+CNY:001=18"
    VALIDATOR.validate(value)


def test_ce_id_depends_on_session_and_rule_version_only() -> None:
    a, _ = only(make().process(record(samples.F2, offset=1)))
    b, _ = only(make().process(record(samples.F2, offset=99)))
    c, _ = only(make({"001": 18, "002": 20}).process(record(samples.F2)))
    assert cloudevents.header(a.headers, "ce_id") == cloudevents.header(b.headers, "ce_id")
    assert cloudevents.header(a.headers, "ce_id") != cloudevents.header(c.headers, "ce_id")
    assert a.value == b.value and a.headers == b.headers


@pytest.mark.parametrize(
    ("value", "raw", "reason"),
    [
        (None, b"{not json", Reason.NOT_JSON),
        (None, b"\xff\xfe", Reason.NOT_JSON),
        (None, None, Reason.EMPTY_VALUE),
        ([1, 2], None, Reason.NOT_AN_OBJECT),
        (samples.notification(sessionId=...), None, Reason.MISSING_SESSION_ID),
        (samples.notification(callEndTime="24/01/2019"), None, Reason.BAD_TIME),
        (samples.notification(callEndTime=...), None, Reason.MISSING_END_TIME),
        (samples.notification(callEndTime="2019-01-24 03:00:00"), None, Reason.END_BEFORE_ANSWER),
        (samples.notification(callOutAnswerTime="2019-01-20 04:00:00"), None, Reason.DURATION_TOO_LONG),
    ],
)
def test_bad_records_go_to_deadletter_with_reason_and_original(value: Any, raw: bytes | None, reason: str) -> None:
    rec = record(value, raw=raw)
    result = make().evaluate(rec)
    assert result.reason == reason and result.billed is None
    out, dead = only(result.outputs)
    assert out.topic == "t.deadletter"
    assert out.key == rec.key
    assert dead["reason"] == reason and dead["stage"] == "billing"
    assert dead["origin"] == {"topic": "t.fee.unique", "partition": 2, "offset": 7}
    assert dead["detail"]
    if isinstance(value, dict | list):
        assert dead["payload"] == value  # the original record, as JSON
    elif raw is not None:
        assert dead["payload"] in (raw.decode("utf-8", "replace"), base64.b64encode(raw).decode())
    else:
        assert dead["payload"] == ""
    assert cloudevents.header(out.headers, "ce_type") == "voicecall.deadletter"
    # Deterministic too: a retried transaction writes the same deadletter event.
    assert make().process(rec) == result.outputs


def test_record_nested_too_deep_for_orjson_to_write_is_still_handled() -> None:
    # orjson reads 1024 levels but writes only 254: the deadletter keeps the raw text instead of raising.
    nested = b"[" * 300 + b"]" * 300
    good = orjson.dumps(samples.notification())[:-1] + b',"userData":' + nested + b"}"
    out, value = only(make().process(record(None, raw=good)))
    assert out.topic == "t.billing" and value["totalBilledMinutes"] == 1 and "userData" not in value
    bad = orjson.dumps(samples.notification(callEndTime="24/01/2019"))[:-1] + b',"userData":' + nested + b"}"
    result = make().evaluate(record(None, raw=bad))
    out, dead = only(result.outputs)
    assert out.topic == "t.deadletter" and result.reason == Reason.BAD_TIME
    assert dead["reason"] == Reason.BAD_TIME and dead["payload"] == bad.decode()


def test_restore_is_a_no_op() -> None:
    c = make()
    c.restore(record(samples.F2))
    assert only(c.process(record(samples.F2)))[1]["totalBilledMinutes"] == 8


time_st = st.builds(lambda d, s: d.strftime("%Y-%m-%d") + " " * s + d.strftime("%H:%M:%S"),
                    st.datetimes(), st.integers(min_value=1, max_value=2))
fee_st = st.fixed_dictionaries(
    {"sessionId": st.text(min_size=1, max_size=40)},
    optional={
        "serviceType": st.sampled_from(["001", "002", "004", "", 2, None]),
        "callOutAnswerTime": st.one_of(time_st, st.just(""), st.text(max_size=5)),
        "fwdAnswerTime": st.one_of(time_st, st.just("")),
        "callEndTime": st.one_of(time_st, st.just("")),
        "appKey": st.text(max_size=10),
        "icid": st.one_of(st.text(max_size=10), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        "fwdDstNum": st.just("+8613800000000"),
    },
)


@settings(deadline=None)
@given(fee_st)
def test_any_record_gives_one_byte_identical_output(fee: dict[str, Any]) -> None:
    rec = record(fee)
    first = make().evaluate(rec)
    second = make().evaluate(record(fee))
    assert first.outputs == second.outputs  # frozen dataclasses: topic, key, value bytes and headers all equal
    out, value = only(first.outputs)
    if out.topic == "t.billing":
        VALIDATOR.validate(value)
        assert first.billed is not None
        assert value["totalBilledMinutes"] == sum(leg["billedMinutes"] for leg in value["legs"])
        assert all(leg["billedMinutes"] == -(-leg["seconds"] // 60) for leg in value["legs"])
    else:
        assert out.topic == "t.deadletter" and value["reason"] == first.reason
        assert value["payload"] == fee

