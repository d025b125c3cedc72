"""What the platform pushes and when: status bodies, merged fee bodies, the timeline, the CDR answer check.

Pure. :func:`timeline` turns calls (in start order) into the ordered stream of things the platform does: a call
starting, a status push, a fee push (or a withheld CDR, see :mod:`.delivery`). Fee records of calls of one app
whose ``callEndTime`` is the same second are merged into pushes of at most 50 records, sent when that second is
over, as the CDR push pages describe.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from voicecall.simulator import delivery
from voicecall.simulator.model import DEFAULT_APP_KEY, Call

MAX_FEE_RECORDS = 50
CONTENT_TYPE = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class CallStarted:
    at: float
    call: Call


@dataclass(frozen=True)
class StatusPush:
    at: float  # when it is pushed
    session_id: str
    event_type: str
    body: bytes
    event_at: float = 0.0  # the event's own time (its ``timestamp``): earlier than ``at`` when late
    app_key: str = DEFAULT_APP_KEY
    late: bool = False
    copies: int = 1  # 2: the same bytes pushed twice, concurrently


@dataclass(frozen=True)
class FeePush:
    at: float
    records: tuple[dict[str, Any], ...]
    body: bytes
    app_key: str = DEFAULT_APP_KEY

    @property
    def session_ids(self) -> list[str]:
        return [str(record["sessionId"]) for record in self.records]


@dataclass(frozen=True)
class CdrWithheld:
    """CDRs the receiver never gets (it "was down" for every re-push): given up on at once."""

    at: float
    records: tuple[dict[str, Any], ...]
    app_key: str = DEFAULT_APP_KEY

    @property
    def session_ids(self) -> list[str]:
        return [str(record["sessionId"]) for record in self.records]


Emission = CallStarted | StatusPush | FeePush | CdrWithheld


def status_body(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def fee_bodies(records: list[dict[str, Any]]) -> list[tuple[tuple[dict[str, Any], ...], bytes]]:
    """Records ending in one second → pushes of ≤ 50 records, in the order given."""
    pushes = []
    for begin in range(0, len(records), MAX_FEE_RECORDS):
        chunk = tuple(records[begin:begin + MAX_FEE_RECORDS])
        pushes.append((chunk, orjson.dumps({"eventType": "fee", "feeLst": list(chunk)})))
    return pushes


# Heap priorities at the same instant: calls are admitted before anything happens at their start time, a fee
# flush for second S (scheduled at S+1) comes before events of second S+1.
_STATUS, _FEE_END, _FLUSH = 1, 2, 0


def timeline(calls: Iterable[Call], faults: delivery.Faults | None = None) -> Iterator[Emission]:
    """Everything the platform does, in simulated-time order. Lazy: reads calls only as far as needed."""
    faults = faults or delivery.Faults()
    rng = faults.rng()
    reorders = faults.late_share > 0 or faults.duplicate_share > 0
    heap: list[tuple[float, int, int, Any]] = []
    order = itertools.count()
    # end second → app → (records to push, records withheld), both in end order
    pending: dict[int, dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {}
    withheld: set[str] = set()
    source = iter(calls)
    upcoming = next(source, None)
    while heap or upcoming is not None:
        # A call can only add events at or after its start: admit every call starting before the next event.
        while upcoming is not None and (not heap or upcoming.start <= heap[0][0]):
            yield CallStarted(upcoming.start, upcoming)
            if reorders:
                for item in delivery.plan(upcoming.status, rng, faults.late_share, faults.duplicate_share):
                    heapq.heappush(heap, (item.at, _STATUS, next(order), (upcoming, item.event, item.late,
                                                                          item.copies)))
            else:
                for event in upcoming.status:
                    heapq.heappush(heap, (event.at, _STATUS, next(order), (upcoming, event, False, 1)))
            if delivery.withheld(rng, faults.lost_cdr_share):
                withheld.add(upcoming.session_id)
            heapq.heappush(heap, (upcoming.end, _FEE_END, next(order), upcoming))
            upcoming = next(source, None)
        if not heap:
            break
        at, kind, _, item = heapq.heappop(heap)
        if kind == _STATUS:
            call, event, late, copies = item
            yield StatusPush(at, call.session_id, event.event_type, status_body(event.body), event.at, call.app_key,
                             late, copies)
        elif kind == _FEE_END:
            second = item.end_second
            if second not in pending:
                pending[second] = {}
                heapq.heappush(heap, (float(second + 1), _FLUSH, next(order), second))
            sent, kept = pending[second].setdefault(item.app_key, ([], []))
            if item.session_id in withheld:
                withheld.discard(item.session_id)
                kept.append(item.fee)
            else:
                sent.append(item.fee)
        else:
            for app_key, (sent, kept) in pending.pop(item).items():
                for records, body in fee_bodies(sent):
                    yield FeePush(at, records, body, app_key)
                if kept:
                    yield CdrWithheld(at, tuple(kept), app_key)


REPUSH_BODIES = ("same", "reordered")


def repush_body(records: tuple[dict[str, Any], ...], form: str, attempt: int) -> bytes | None:
    """The body of re-push number ``attempt`` (≥ 1), or ``None`` for the first push's bytes.

    The CDR push pages do not say whether a re-push is byte-identical: ``same`` resends the bytes, ``reordered``
    sends the same records in another order with their fields in another order (every other re-push reversed),
    so a receiver that de-duplicates by body bytes instead of by record is caught.
    """
    if form == "same":
        return None
    if form != "reordered":
        raise ValueError(f"re-push body form must be one of {REPUSH_BODIES}")
    ordered = list(records) if attempt % 2 == 0 else list(reversed(records))
    reshaped = [dict(reversed(list(record.items()))) for record in ordered]
    return orjson.dumps({"eventType": "fee", "feeLst": reshaped})


def fee_accepted(status: int, body: bytes) -> bool:
    """The platform's success test for a CDR push: HTTP 200, and ``resultcode`` "0" when the body carries one.

    A 200 without a JSON body (or without ``resultcode``) counts as success, as the CDR push pages make the response
    parameters optional; ``resultcode`` 0 as a number is read as "0" (the pages do not give its type).
    """
    if status != 200:
        return False
    try:
        answer = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return True
    if not isinstance(answer, dict) or "resultcode" not in answer:
        return True
    return str(answer["resultcode"]).strip() == "0"
