"""The pure core: bytes in → records or a rejection, no Kafka."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from ingress_helpers import F2, S4, STATUS_EXAMPLES, fee_push, status_push

from voicecall.ingress import parse
from voicecall.ingress.config import IngressSettings
from voicecall.runtime import cloudevents
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

ORIGIN = {"path": "/notify", "client": "127.0.0.1"}


@pytest.fixture(scope="module")
def parser() -> parse.Parser:
    return parse.Parser(IngressSettings(topic_prefix="p."))


def run(parser: parse.Parser, body: bytes | dict[str, Any], push_id: str = "push-1") -> parse.Outcome:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parser.parse(raw, received="2026-01-01T00:00:00.000Z", push_id=push_id, origin=dict(ORIGIN))


def headers(record: Record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


@pytest.mark.parametrize("name", sorted(STATUS_EXAMPLES))
def test_status_examples_become_one_status_record(parser: parse.Parser, name: str) -> None:
    body = STATUS_EXAMPLES[name]
    doc = orjson.loads(body)
    outcome = run(parser, body)
    assert outcome.status == 200 and outcome.reason is None
    [record] = outcome.records
    assert record.topic == "p.status.raw"
    assert record.key == doc["statusInfo"]["sessionId"].encode()
    assert orjson.loads(record.value) == doc["statusInfo"]  # as received, unknown fields included
    h = headers(record)
    assert h["ce_specversion"] == "1.0"
    assert h["ce_type"] == f"com.huaweicloud.voicecall.status.{doc['eventType']}"
    assert h["content-type"] == "application/json"
    assert h["voicecall_push_id"] == "push-1" and h["voicecall_received"] == "2026-01-01T00:00:00.000Z"
    assert h["ce_source"] and len(h["ce_id"]) == 32


def test_doubled_space_time_is_kept_verbatim_and_read_for_ce_time(parser: parse.Parser) -> None:
    [record] = run(parser, S4).records
    assert orjson.loads(record.value)["timestamp"] == "2018-04-09  10:57:42"
    assert headers(record)["ce_time"] == "2018-04-09T10:57:42Z"


def test_f2_gives_two_fee_records_with_equal_deterministic_ids(parser: parse.Parser) -> None:
    outcome = run(parser, F2)
    assert outcome.status == 200 and len(outcome.records) == 2
    first, second = outcome.records
    assert first.topic == "p.fee.raw" and first.key == b"1200_366_0_20161228102743@callenabler.home1.com"
    assert headers(first)["ce_type"] == cloudevents.TYPE_FEE
    assert headers(first)["ce_time"] == "2016-12-26T01:19:46Z"
    # The two records of the demo are identical: the same content, the same id (the deduplicator's job).
    assert headers(first)["ce_id"] == headers(second)["ce_id"]
    assert orjson.loads(first.value)["endToEndID"] == 543207693


def test_fee_ce_id_survives_a_repush_with_other_whitespace_and_key_order(parser: parse.Parser) -> None:
    push = fee_push(3)
    again = {"feeLst": [dict(reversed(list(r.items())), callEndTime="2019-01-24 03:04:49") for r in push["feeLst"]],
             "eventType": "fee"}
    ids = [headers(r)["ce_id"] for r in run(parser, push, "a").records]
    ids_again = [headers(r)["ce_id"] for r in run(parser, again, "b").records]
    assert ids == ids_again and len(set(ids)) == 3
    changed = fee_push(3)
    changed["feeLst"][1]["callEndTime"] = "2019-01-24 03:04:50"
    assert [headers(r)["ce_id"] for r in run(parser, changed).records][1] != ids[1]


def test_status_ce_id_tells_events_apart(parser: parse.Parser) -> None:
    a = headers(run(parser, status_push("s", "callout")).records[0])["ce_id"]
    b = headers(run(parser, status_push("s", "alerting")).records[0])["ce_id"]
    assert a != b and a == headers(run(parser, status_push("s", "callout")).records[0])["ce_id"]


def test_liberal_fields_are_accepted(parser: parse.Parser) -> None:
    push = fee_push(1, recordFlag="1", direction="0", fwdAnswerTime="", callOutUnaswRsn=None, extraField={"x": 1})
    outcome = run(parser, push)
    assert outcome.status == 200
    assert orjson.loads(outcome.records[0].value) == push["feeLst"][0]
    info = status_push("s", "disconnect")
    info["statusInfo"].update(stateCode="0", timestamp="")
    record = run(parser, info).records[0]
    assert headers(record)["ce_time"] == "2026-01-01T00:00:00.000Z"  # no usable time: the receive time


def test_content_type_and_bom_do_not_matter(parser: parse.Parser) -> None:
    assert run(parser, b"\xef\xbb\xbf" + orjson.dumps(status_push("s"))).status == 200


@pytest.mark.parametrize(("body", "reason", "detail"), [
    (b"not json", Reason.NOT_JSON, "body is not JSON"),
    (b"", Reason.NOT_JSON, "body is not JSON"),
    (b"[1, 2]", Reason.NOT_AN_OBJECT, "body is not a JSON object"),
    (b'"x"', Reason.NOT_AN_OBJECT, "body is not a JSON object"),
    (b'{"statusInfo": {"sessionId": "s"}}', Reason.MISSING_EVENT_TYPE, "eventType is missing"),
    (b'{"eventType": 3}', Reason.INVALID_SHAPE, "eventType is not a string"),
    (b'{"eventType": "fee"}', Reason.MISSING_FEE_LIST, "feeLst is missing"),
    (b'{"eventType": "fee", "feeLst": []}', Reason.INVALID_SHAPE, "body.feeLst must contain at least 1 items"),
    (b'{"eventType": "fee", "feeLst": [{"callEndTime": ""}]}', Reason.INVALID_SHAPE, "sessionId"),
    (b'{"eventType": "fee", "feeLst": {"sessionId": "s"}}', Reason.INVALID_SHAPE, "body.feeLst must be array"),
    (b'{"eventType": "answer"}', Reason.MISSING_STATUS_INFO, "statusInfo is missing"),
    (b'{"eventType": "answer", "statusInfo": "s"}', Reason.INVALID_SHAPE, "body.statusInfo must be object"),
    (b'{"eventType": "answer", "statusInfo": {"sessionId": ""}}', Reason.INVALID_SHAPE, "sessionId"),
    (b'{"eventType": "answer", "statusInfo": {"sessionId": 12}}', Reason.INVALID_SHAPE, "sessionId must be string"),
    (b'{"eventType": "fee", "feeLst": [1]}', Reason.INVALID_SHAPE, "body.feeLst[0] must be object"),
])
def test_bad_inputs_are_400_with_a_deadletter_record(parser: parse.Parser, body: bytes, reason: str,
                                                     detail: str) -> None:
    outcome = run(parser, body)
    assert outcome.status == 400
    assert outcome.reason == reason
    assert detail in outcome.detail
    [record] = outcome.records
    assert record.topic == "p.deadletter"
    value = orjson.loads(record.value)
    assert value["reason"] == reason and value["stage"] == "ingress" and value["origin"] == ORIGIN
    assert value["detail"] == outcome.detail and value["push_id"] == "push-1"
    try:
        expected: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        expected = body.decode()
    assert value["payload"] == expected
    assert headers(record)["ce_type"] == cloudevents.TYPE_DEADLETTER


def test_51_records_are_rejected_and_50_accepted(parser: parse.Parser) -> None:
    assert len(run(parser, fee_push(50)).records) == 50
    outcome = run(parser, fee_push(51))
    assert outcome.status == 400 and "50" in outcome.detail
    assert orjson.loads(outcome.records[0].value)["payload"]["feeLst"][50]["sessionId"] == "sess-50@callenabler245" \
        ".huaweicaas.com"
    assert outcome.records[0].key == b"sess-0@callenabler245.huaweicaas.com"


def test_invalid_utf8_is_kept_as_base64(parser: parse.Parser) -> None:
    body = b'{"eventType": "answer", "statusInfo": {"sessionId": "\xff\xfe"}}'
    outcome = run(parser, body)
    assert outcome.status == 400 and outcome.reason == Reason.INVALID_UTF8
    value = orjson.loads(outcome.records[0].value)
    assert value["encoding"] == "base64" and base64.b64decode(value["payload"]) == body


def test_unknown_event_type_is_accepted_into_deadletter(parser: parse.Parser) -> None:
    body = {"eventType": "callin", "statusInfo": {"sessionId": "s9"}}
    outcome = run(parser, body)
    assert outcome.status == 200 and outcome.reason == Reason.UNKNOWN_EVENT_TYPE
    [record] = outcome.records
    assert record.topic == "p.deadletter" and record.key == b"s9"
    assert orjson.loads(record.value)["payload"] == body


def test_a_push_on_the_other_path_is_routed_by_event_type(parser: parse.Parser) -> None:
    # The core has no notion of the path: /notify/status with a fee push still yields fee records.
    outcome = parser.parse(orjson.dumps(fee_push(2)), received="t", push_id="p",
                           origin={"path": "/notify/status", "client": "c"})
    assert [r.topic for r in outcome.records] == ["p.fee.raw", "p.fee.raw"]


def test_reject_too_large_cuts_the_payload(parser: parse.Parser) -> None:
    body = b"x" * (600 * 1024)
    outcome = parser.reject(body, Reason.TOO_LARGE, "too big", dict(ORIGIN), "t", "p", status=413)
    value = orjson.loads(outcome.records[0].value)
    assert outcome.status == 413 and value["truncated"] is True and len(value["payload"]) == 512 * 1024


@pytest.mark.parametrize("end_time", ["2019-01-24  03:04:49", " 2019-01-24\t03:04:49 ", "2019-01-24\u00a003:04:49"])
def test_any_whitespace_in_times_gives_the_same_id(end_time: str) -> None:
    record = fee_push(1, callEndTime=end_time, fooTime=end_time)["feeLst"][0]
    single = dict(record, callEndTime="2019-01-24 03:04:49", fooTime="2019-01-24 03:04:49")
    assert parse.content_id(record) == parse.content_id(single)
    assert record["callEndTime"] == end_time  # the record itself is left as received


@pytest.mark.parametrize(("template", "status", "reason"), [
    ('{"eventType":"fee","feeLst":[{"sessionId":"s-1","x":%s}]}', 400, Reason.INVALID_SHAPE),
    ('{"eventType":"callout","statusInfo":{"sessionId":"s-1","x":%s}}', 400, Reason.INVALID_SHAPE),
    ('{"eventType":"someday","x":%s}', 200, Reason.UNKNOWN_EVENT_TYPE),
    ('%s', 400, Reason.NOT_AN_OBJECT),
])
def test_nesting_orjson_reads_but_cannot_write_is_answered_with_the_text_kept(parser: parse.Parser, template: str,
                                                                             status: int, reason: str) -> None:
    body = (template % ("[" * 300 + "]" * 300)).encode()
    orjson.loads(body)  # it parses (1024 levels) ...
    outcome = run(parser, body)  # ... and must not end in an exception (a 500 loses a status push for good)
    assert (outcome.status, outcome.reason) == (status, reason)
    [record] = outcome.records
    assert orjson.loads(record.value)["payload"] == body.decode()


def test_a_big_integer_in_a_documented_field_is_kept_exactly_and_accepted(parser: parse.Parser) -> None:
    # The exact re-read (integers beyond 64 bits) must not be validated again: the schema would refuse the
    # exact number's stand-in, and a push it accepted was answered 400.
    big = "123456789012345678901234567890"
    status = b'{"eventType":"answer","statusInfo":{"sessionId":"s1","userData":' + big.encode() + b"}}"
    fee = (b'{"eventType":"fee","feeLst":[{"sessionId":"f1","direction":0,"userData":' + big.encode() + b"}]}")
    for body in (status, fee):
        outcome = run(parser, body)
        assert outcome.status == 200 and outcome.reason is None, outcome.detail
        [record] = outcome.records
        assert b'"userData":' + big.encode() in record.value
