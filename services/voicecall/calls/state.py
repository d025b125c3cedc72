"""How a call's facts are kept in memory: a compact JSON array, about 40 % of the record it renders to.

The record repeats what it derives (legs, state, endedAt, …) and spells out every key and time; the state keeps
only the facts (:class:`voicecall.calls.call.Call`), each number once, times as epoch seconds:

    [appKey, serviceType, updatedMs, numbers, callers, events, overflow, more, cdr, billing, recording]

``numbers`` lists the numbers the events carry and ``callers`` their callers (same positions); an event is
``[epochSeconds, eventTypeCode, numberIndex (-1: none), stateCode?, stateDesc?, digits?]``; the CDR is null
(pending), ``["m", since]`` (missing) or ``["r", callerNum, calleeNum, fwdDisplayNum, fwdDstNum, recordFlag,
*times]`` (a time as epoch seconds, or its text as received when it could not be read). The session id is the key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from voicecall.calls import events as ev
from voicecall.calls.call import CDR_NUMBERS, CDR_TIMES, Call
from voicecall.runtime import times

EVENT_TYPES = tuple(ev.EVENT_ORDER)  # code → eventType
_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
_CDR_FIELDS = (*CDR_NUMBERS, "recordFlag")


@lru_cache(maxsize=16384)
def _iso(second: int) -> str:
    return times.iso_z(datetime.fromtimestamp(second, UTC))


def _second(iso: str) -> int:
    return ev.epoch_ms(iso) // 1000


def _time_in(value: str) -> int | str:
    if len(value) == 20 and value[10] == "T" and value[-1] == "Z":
        try:
            return _second(value)
        except ValueError:
            pass
    return value


def pack(call: Call) -> bytes:
    numbers: dict[str, int] = {}
    events = []
    for e in call.events:
        called = e.get("called")
        index = -1 if called is None else numbers.setdefault(called, len(numbers))
        item: list[Any] = [_second(e["timestamp"]), _CODE[e["eventType"]], index,
                           e.get("stateCode"), e.get("stateDesc"), e.get("digits")]
        while item[-1] is None:
            item.pop()
        events.append(item)
    callers = call.callers_kept()
    for number in callers:
        numbers.setdefault(number, len(numbers))
    cdr: Any = None
    if call.cdr is not None:
        if call.cdr["status"] == "missing":
            cdr = ["m", call.cdr["since"]]
        else:
            received = call.cdr
            cdr = ["r", *(received.get(name) for name in _CDR_FIELDS),
                   *(None if (t := received.get(name)) is None else _time_in(t) for name in CDR_TIMES)]
    return orjson.dumps([call.app_key, call.service_type, call.updated_ms, list(numbers),
                         [callers.get(number) for number in numbers], events, call.overflow, call.more, cdr,
                         call.billing, call.recording])


def unpack(session_id: str, data: bytes) -> Call:
    (app_key, service_type, updated_ms, numbers, callers, events, overflow, more, cdr, billing,
     recording) = orjson.loads(data)
    call = Call(session_id, app_key, service_type, overflow=overflow, more=more, billing=billing,
                recording=recording, updated_ms=updated_ms,
                callers={n: c for n, c in zip(numbers, callers, strict=True) if c is not None})
    shown = call.events
    for item in events:
        entry: ev.Entry = {"eventType": EVENT_TYPES[item[1]], "timestamp": _iso(item[0])}
        if item[2] >= 0:
            entry["called"] = numbers[item[2]]
        if len(item) > 3:
            for name, value in zip(("stateCode", "stateDesc", "digits"), item[3:], strict=False):
                if value is not None:
                    entry[name] = value
        shown.append(entry)
    if cdr is not None:
        if cdr[0] == "m":
            call.cdr = {"status": "missing", "since": cdr[1]}
        else:
            received: dict[str, Any] = {"status": "received"}
            fields = len(_CDR_FIELDS)
            for name, value in zip(_CDR_FIELDS, cdr[1:1 + fields], strict=True):
                if value is not None:
                    received[name] = value
            for name, value in zip(CDR_TIMES, cdr[1 + fields:], strict=True):
                if value is not None:
                    received[name] = _iso(value) if isinstance(value, int) else value
            call.cdr = received
    return call
