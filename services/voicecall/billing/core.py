"""The billing core: one ``fee.unique`` record in, one ``billing`` or ``deadletter`` output out; no I/O.

Deterministic by construction — replay (``voicecall replay``) and downstream upserts by key rely on it: the value
is orjson with sorted keys and holds no wall-clock time; ``ce_id`` is derived from sessionId and ruleVersion;
``ce_time`` is the call's end (or, when the call has none, the input record's own time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall.billing import rules
from voicecall.billing.tariff import Tariff
from voicecall.runtime import cloudevents, deadletter, times
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

SOURCE = "/voicecall/billing"
STAGE = "billing"

# Identifiers worth keeping on the billing record so downstream systems can join it without the fee record.
KEPT_FIELDS = ("appKey", "spId", "icid", "userData")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 6x (hot path)
class Result:
    """What one record turned into: the outputs, plus what metrics want to know about them."""

    outputs: list[Record]
    billed: rules.Billed | None = None
    reason: Reason | None = None  # deadletter reason when not billed


def rule_version(tariff: Tariff) -> str:
    """``1+CNY:001=18,002=18``: the rules' version and the tariff in force."""
    return f"{rules.RULES_VERSION}+{tariff.describe()}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else times.iso_z(moment)


def billing_value(billed: rules.Billed, fee: dict[str, Any], tariff: Tariff, version: str | None = None
                  ) -> dict[str, Any]:
    """The ``voicecall.billing`` value (schemas/billing.schema.json)."""
    service_type = billed.effective_service_type
    charge = tariff.charge(service_type, billed.total_billed_minutes)
    end_time = billed.end_time
    end = _iso(end_time)  # every leg ends at callEndTime: format it once
    legs = []
    for leg in billed.legs:
        answer = leg.answer_time
        legs.append({
            "leg": leg.leg,
            "answered": answer is not None,
            "answerTime": _iso(answer) if answer is not None else None,
            "endTime": end if leg.end_time is end_time else _iso(leg.end_time),
            "seconds": leg.seconds,
            "billedMinutes": leg.billed_minutes,
        })
    value: dict[str, Any] = {
        "sessionId": billed.session_id,
        "serviceType": service_type,
        "serviceTypeInferred": billed.inferred,
        "answered": billed.answered,
        "legs": legs,
        "totalSeconds": billed.total_seconds,
        "totalBilledMinutes": billed.total_billed_minutes,
        "callEndTime": end,
        "currency": tariff.currency,
        "rate": None,
        "amount": None,
        "amountDecimal": None,
        "ruleVersion": version or rule_version(tariff),
    }
    if charge is not None:
        value["rate"] = charge.rate
        value["amount"] = charge.amount
        value["amountDecimal"] = charge.decimal()
    for name in KEPT_FIELDS:
        kept = fee.get(name)
        if isinstance(kept, str):
            value[name] = kept
    return value


class BillingCore:
    """Stateless: ``restore`` has nothing to do, any number of instances may run side by side."""

    def __init__(self, *, billing_topic: str, deadletter_topic: str, tariff: Tariff,
                 max_payload: int = 512 * 1024) -> None:
        self.billing_topic = billing_topic
        self.deadletter_topic = deadletter_topic
        self.tariff = tariff
        self.max_payload = max_payload
        self.rule_version = rule_version(tariff)

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        return self.evaluate(record).outputs

    def restore(self, record: ConsumerRecord[Any, Any]) -> None:
        return None

    def evaluate(self, record: ConsumerRecord[Any, Any]) -> Result:
        raw: bytes | None = record.value
        if raw is None:
            return self._deadletter(record, Reason.EMPTY_VALUE, "the record has no value (a tombstone?)")
        try:
            fee = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return self._deadletter(record, Reason.NOT_JSON, f"not JSON: {error}")
        try:
            billed = rules.bill(fee)
        except rules.BadRecord as error:
            return self._deadletter(record, error.reason, error.detail, fee)
        value = billing_value(billed, fee, self.tariff, self.rule_version)
        ce_id = cloudevents.event_id(billed.session_id, self.rule_version)
        headers = cloudevents.headers(cloudevents.TYPE_BILLING, SOURCE, ce_id,
                                      value["callEndTime"] or cloudevents.record_time(record))
        body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        output = Record(self.billing_topic, billed.session_id.encode(), body, headers)
        return Result([output], billed=billed)

    def _deadletter(self, record: ConsumerRecord[Any, Any], reason: Reason, detail: str,
                    parsed: Any = deadletter.UNPARSED) -> Result:
        output = deadletter.for_record(record, reason, STAGE, self.deadletter_topic, detail=detail, parsed=parsed,
                                       max_bytes=self.max_payload)
        return Result([output], reason=reason)
