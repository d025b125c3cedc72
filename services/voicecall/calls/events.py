"""The status timeline of a call: one entry per distinct status event, in a total order that never depends on the
order the pushes arrived in.

An entry is ``{"eventType", "timestamp", "called"?, "stateCode"?, "stateDesc"?, "digits"?}`` (the ``timestamp`` as
ISO 8601 UTC; numbers, codes and texts as received); the record shows a leg's events with the leg's label instead
of its number (``legs`` has the number). Two pushes with the same entry are the same event: the second is a
duplicate (the ``caller`` of a push is not part of it: it goes to its leg). Several events share a second (answer A
and callout B, answer and disconnect of a 0-second call, collectInfo and disconnect), so ties are broken by the
call's own order: the platform calls A, then B, so at the same second leg A's events come before leg B's, each
leg's in state order (callout, alerting, answer, collectInfo), and the one disconnect, which ends the call, comes
last.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from functools import lru_cache
from typing import Any

from voicecall import huawei
from voicecall.runtime import times

STATES = ("initiated", "ringing", "answered", "ended")
# The call state an event brings the call to (collected digits mean the callee answered).
EVENT_STATE = {"callout": 0, "alerting": 1, "answer": 2, "collectInfo": 2, "disconnect": 3}
# The order of events of one leg at the same second.
EVENT_ORDER = {"callout": 0, "alerting": 1, "answer": 2, "collectInfo": 3, "disconnect": 4}
ENDED = 3
LEG_EVENTS = frozenset({"callout", "alerting", "answer"})  # carry the leg's own number in ``called``

Entry = dict[str, Any]


@lru_cache(maxsize=8192)  # a burst of pushes shares its seconds
def iso_time(value: str) -> str | None:
    """A Huawei UTC time (``yyyy-MM-dd HH:mm:ss``) → ``2026-01-01T00:00:00Z``; None when empty or unreadable."""
    try:
        moment = huawei.parse_time(value)
    except huawei.BadTime:
        return None
    return times.iso_z(moment) if moment is not None else None


@lru_cache(maxsize=8192)
def _iso_second(second: int) -> str:
    return times.iso_ms(second * 1000)[:-5]


def moment(epoch_ms: int) -> str:
    """Epoch milliseconds → ``2026-01-01T00:00:00.123Z`` (as :func:`voicecall.runtime.times.iso_ms`, cached per
    second)."""
    second, milli = divmod(epoch_ms, 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


@lru_cache(maxsize=8192)
def epoch_ms(iso: str) -> int:
    """An ISO 8601 UTC time the pipeline wrote (``…Z``, with or without milliseconds) → epoch milliseconds."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def text(value: object) -> str | None:
    """A number or text field as received, as text (numbers: their JSON form); None when absent or empty."""
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def entry(event_type: str, timestamp: str, info: dict[str, Any]) -> tuple[Entry, str | None]:
    """The timeline entry of one status push (``info`` = its statusInfo), and the push's ``caller``."""
    out: Entry = {"eventType": event_type, "timestamp": timestamp}
    called = info.get("called")
    if called.__class__ is not str or not called:  # usually a non-empty string: no call for it
        called = text(called)
    if called is not None:
        out["called"] = called
    if event_type == "disconnect":
        code = info.get("stateCode")
        if isinstance(code, int | str) and not isinstance(code, bool):
            out["stateCode"] = code
        desc = text(info.get("stateDesc"))
        if desc is not None:
            out["stateDesc"] = desc
    elif event_type == "collectInfo":
        digits = text(info.get("digitInfo"))
        if digits is not None:
            out["digits"] = digits
    caller = info.get("caller")
    return out, caller if caller.__class__ is str and caller else text(caller)


def keep_key(e: Entry) -> tuple[Any, ...]:
    """A total order of entries that knows nothing of legs: decides which entries a full timeline keeps."""
    code = e.get("stateCode")
    return (e["timestamp"], EVENT_ORDER[e["eventType"]], e.get("called") or "", e.get("digits") or "",
            "" if code is None else str(code), e.get("stateDesc") or "")


def display_key(e: Entry, labels: dict[str, str]) -> tuple[Any, ...]:
    """The timeline's order: time, then the disconnect last, legs in order (A, or no leg, before B), then state
    order."""
    key = keep_key(e)
    disconnect = e["eventType"] == "disconnect"
    label = None if disconnect else labels.get(key[2])
    return (key[0], disconnect, label or "A", *key[1:])


def display_order(events: list[Entry], labels: dict[str, str]) -> list[Entry]:
    """``events`` (in keep order) in the timeline's order: the same unless two of them share a second."""
    for before, after in itertools.pairwise(events):
        if before["timestamp"] == after["timestamp"]:
            return sorted(events, key=lambda e: display_key(e, labels))
    return events


def shown(e: Entry, labels: dict[str, str]) -> Entry:
    """The entry as the record shows it, fields in a fixed order: a leg's event with its label for its number."""
    event_type = e["eventType"]
    out: Entry = {"eventType": event_type, "timestamp": e["timestamp"]}
    called = e.get("called")
    if called is not None:
        label = None if event_type == "disconnect" else labels.get(called)
        if label is None:
            out["called"] = called
        else:
            out["leg"] = label
    if len(e) > len(out):
        for name in ("stateCode", "stateDesc", "digits"):
            if name in e:
                out[name] = e[name]
    return out
