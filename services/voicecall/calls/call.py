"""One call: the facts the inputs brought, and the record (``voicecall.calls`` value) made from them. Pure.

The record holds every fact, so it is also the state: a call is loaded from its last record and written back as a
whole (the stage restores from its own compacted topic). Facts: the timeline entries, the CDR (its numbers, flag
and times, or ``missing``), the billing totals, the recording's fate, ``appKey``/``serviceType`` and ``updatedAt``.
Everything else — state, legs, endReason, endedAt, digits, caller/called, the order of the timeline, the
recording's ``none``/``pending``, complete — is computed from them by :meth:`Call.render`, so the record depends
on *which* inputs arrived, never on their order. Folds over events use max/min, so a repeated event changes
nothing.

Timeline cap: the record shows at most :data:`MAX_EVENTS` entries, the oldest; the others are still folded into
the state and legs, and are remembered (up to :data:`MAX_OVERFLOW`, in the record's ``voicecall-calls-overflow``
header, never shown) so that a repeat of a dropped event is recognised; ``eventsDropped`` counts them all.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import orjson

from voicecall import huawei
from voicecall.calls import events as ev
from voicecall.runtime import times

MAX_EVENTS = 32
MAX_OVERFLOW = 256
OVERFLOW_HEADER = "voicecall-calls-overflow"
CDR_NUMBERS = ("callerNum", "calleeNum", "fwdDisplayNum", "fwdDstNum")
CDR_TIMES = ("callOutStartTime", "callOutAlertingTime", "callOutAnswerTime", "fwdStartTime", "fwdAlertingTime",
             "fwdAnswerTime", "callEndTime")
SETTLED = frozenset({"stored", "failed", "none"})
_CDR_CALLER = {"A": "callerNum", "B": "fwdDisplayNum"}  # the CDR's number shown to each leg
_CDR_ANSWER = {"A": "callOutAnswerTime", "B": "fwdAnswerTime"}


@dataclass(slots=True, eq=False)
class Call:
    session_id: str
    app_key: str | None = None
    service_type: str | None = None
    events: list[ev.Entry] = field(default_factory=list)  # shown, in keep order
    overflow: list[ev.Entry] = field(default_factory=list)  # dropped from the timeline, remembered
    more: int = 0  # dropped and not remembered
    cdr: dict[str, Any] | None = None  # {"status": "received", …} or {"status": "missing", "since"}; None = pending
    billing: dict[str, Any] | None = None
    recording: dict[str, Any] | None = None  # stored or failed; None = not settled by the downloader
    updated_ms: int = 0
    callers: dict[str, str] = field(default_factory=dict)  # number → the least caller its pushes carried

    # -- loading and saving ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, value: bytes, overflow: bytes | None = None) -> Call:
        doc = orjson.loads(value)
        cdr = doc["cdr"]
        recording = doc["recording"]
        call = cls(doc["sessionId"], doc.get("appKey"), doc.get("serviceType"),
                   cdr=None if cdr["status"] == "pending" else cdr, billing=doc.get("billing"),
                   recording=recording if recording["status"] in ("stored", "failed") else None,
                   updated_ms=ev.epoch_ms(doc["updatedAt"]))
        numbers = {}
        for leg in doc["legs"]:
            numbers[leg["leg"]] = leg["called"]
            if leg.get("caller") is not None:
                call.callers[leg["called"]] = leg["caller"]
        call.callers = call.callers_kept()
        events = call.events
        tied = False
        for shown in doc["events"]:
            label = shown.pop("leg", None)
            if label is not None:
                shown["called"] = numbers[label]
            if events and events[-1]["timestamp"] == shown["timestamp"]:
                tied = True
            events.append(shown)
        if tied:  # shown in display order, kept in keep order: they differ only within a second
            events.sort(key=ev.keep_key)
        if overflow:
            extra = orjson.loads(overflow)
            call.overflow, call.more = extra["events"], extra["more"]
        return call

    def callers_kept(self) -> dict[str, str]:
        """The callers' fold, without what the CDR overrides for good: a leg shows the CDR's number for it when
        the CDR has one (a loaded record shows only that, so the fold behind it is not kept anywhere)."""
        cdr = self.cdr if self.cdr is not None and self.cdr["status"] == "received" else None
        if cdr is None:
            return self.callers
        hidden = {cdr.get(called) for called, shown in (("calleeNum", "callerNum"), ("fwdDstNum", "fwdDisplayNum"))
                  if cdr.get(shown)}
        return {number: caller for number, caller in self.callers.items() if number not in hidden}

    def overflow_header(self) -> bytes | None:
        if not self.overflow and not self.more:
            return None
        return orjson.dumps({"events": self.overflow, "more": self.more})

    def copy(self) -> Call:
        """A copy to change (entries and the CDR, billing and recording objects are replaced, never changed)."""
        return Call(self.session_id, self.app_key, self.service_type, list(self.events), list(self.overflow),
                    self.more, self.cdr, self.billing, self.recording, self.updated_ms, dict(self.callers))

    # -- facts -------------------------------------------------------------------------------------------------

    def touch(self, input_ms: int) -> None:
        """A changing input's time: ``updatedAt`` is the newest of them (so it, too, ignores arrival order)."""
        if input_ms > self.updated_ms:
            self.updated_ms = input_ms

    def add_event(self, entry: ev.Entry, caller: str | None = None) -> bool:
        """Add a status event; False when it is a duplicate (nothing changes)."""
        if entry in self.events or entry in self.overflow:
            return False
        called = entry.get("called")
        if caller is not None and called is not None:
            known = self.callers.get(called)
            self.callers[called] = caller if known is None else min(known, caller)
        if len(self.events) < MAX_EVENTS:
            bisect.insort(self.events, entry, key=ev.keep_key)
            return True
        if len(self.overflow) >= MAX_OVERFLOW:  # remembered no more: a repeat of it would count again
            self.more += 1
            return True
        if ev.keep_key(entry) < ev.keep_key(self.events[-1]):
            bisect.insort(self.events, entry, key=ev.keep_key)
            entry = self.events.pop()  # the newest shown one makes room
        self.overflow.append(entry)
        return True

    def set_cdr(self, cdr: dict[str, Any], app_key: str | None, service_type: str | None) -> bool:
        """The CDR (it also ends a call flagged missing). Its appKey and serviceType win over billing's."""
        before = (self.cdr, self.app_key, self.service_type)
        self.cdr = cdr
        self.app_key = app_key or self.app_key
        self.service_type = service_type or self.service_type
        return (self.cdr, self.app_key, self.service_type) != before

    def set_billing(self, billing: dict[str, Any], app_key: str | None, service_type: str | None) -> bool:
        before = (self.billing, self.app_key, self.service_type)
        self.billing = billing
        self.app_key = self.app_key or app_key  # the CDR's, when it has them
        self.service_type = self.service_type or service_type
        return (self.billing, self.app_key, self.service_type) != before

    def set_recording(self, recording: dict[str, Any]) -> bool:
        before, self.recording = self.recording, recording
        return recording != before

    # -- timers ------------------------------------------------------------------------------------------------

    def disconnect(self) -> ev.Entry | None:
        """The call's disconnect: the earliest, should the platform ever send two."""
        for e in self.events:  # in keep order: the first one found is the earliest shown
            if e["eventType"] == "disconnect":
                return e
        found = [e for e in self.overflow if e["eventType"] == "disconnect"]
        return min(found, key=ev.keep_key) if found else None

    def cdr_due(self, grace: float) -> float | None:
        """When a call ended by a disconnect and still without CDR counts as missing (epoch seconds)."""
        if self.cdr is not None:
            return None
        disconnect = self.disconnect()
        return None if disconnect is None else ev.epoch_ms(disconnect["timestamp"]) / 1000 + grace

    def mark_missing(self, due: float) -> None:
        self.cdr = {"status": "missing", "since": times.iso_ms(int(due * 1000))}
        self.touch(int(due * 1000))

    # -- the record ----------------------------------------------------------------------------------------------

    def render(self) -> dict[str, Any]:
        every = sorted(self.events + self.overflow, key=ev.keep_key) if self.overflow else self.events
        # One pass in keep order: the furthest state, the first disconnect, the last digits collected, and per
        # number of a leg's events its furthest state and first answer.
        rank, disconnect, digits = 0, None, None
        numbers: dict[str, list[Any]] = {}
        state_of = ev.EVENT_STATE
        for e in every:
            event_type = e["eventType"]
            state = state_of[event_type]
            if state > rank:
                rank = state
            if event_type == "disconnect":
                if disconnect is None:
                    disconnect = e
            elif event_type == "collectInfo":
                digits = e.get("digits", digits)
            elif (called := e.get("called")) is not None:
                seen = numbers.get(called)
                if seen is None:
                    seen = numbers[called] = [state, None]
                elif state > seen[0]:
                    seen[0] = state
                if event_type == "answer" and seen[1] is None:
                    seen[1] = e["timestamp"]
        if self.cdr is not None or self.billing is not None or self.recording is not None:
            rank = ev.ENDED  # each of them only exists for a call that ended
        cdr = self.cdr if self.cdr is not None and self.cdr["status"] == "received" else None
        legs, labels = self._legs(numbers, cdr, disconnect, rank == ev.ENDED)
        record: dict[str, Any] = {"sessionId": self.session_id}
        if self.app_key is not None:
            record["appKey"] = self.app_key
        if self.service_type is not None:
            record["serviceType"] = self.service_type
        if legs:
            first = legs[0]
            if first["caller"] is not None:
                record["caller"] = first["caller"]
            record["called"] = first["called"]
        record["state"] = ev.STATES[rank]
        if digits is not None:
            record["digits"] = digits
        record["legs"] = legs
        ended_at = disconnect["timestamp"] if disconnect else cdr.get("callEndTime") if cdr else None
        if disconnect is not None:
            record["endReason"] = {"stateCode": disconnect.get("stateCode"), "stateDesc": disconnect.get("stateDesc")}
        if ended_at is not None:
            record["endedAt"] = ended_at
        shown = ev.shown
        record["events"] = [shown(e, labels) for e in ev.display_order(self.events, labels)]
        record["eventsDropped"] = len(self.overflow) + self.more
        record["cdr"] = self.cdr if self.cdr is not None else {"status": "pending"}
        if self.billing is not None:
            record["billing"] = self.billing
        recording = self.recording or self._no_recording(cdr)
        record["recording"] = recording
        record["updatedAt"] = ev.moment(self.updated_ms)
        record["complete"] = (cdr is not None and self.billing is not None and recording["status"] in SETTLED
                              and (rank == ev.ENDED or not every))
        return record

    def _legs(self, numbers: dict[str, list[Any]], cdr: dict[str, Any] | None, disconnect: ev.Entry | None,
              ended: bool) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The legs, A first, and the label of each number. A leg is a number the platform called: leg A's
        callout/alerting/answer carry A's number in ``called``, leg B's B's number, and the disconnect A's; the CDR
        names A (``calleeNum``) and B (``fwdDstNum``) outright. Any further number (never seen so far) gets C, D…
        ``numbers``: per number of a leg's events, in order of their first event, [furthest state, first answer]."""
        cdr = cdr or {}
        a = cdr.get("calleeNum") or (disconnect or {}).get("called") or next(iter(numbers), None)
        b = cdr.get("fwdDstNum") or next((n for n in numbers if n != a), None)
        order = [n for n in (a, b) if n is not None] + [n for n in numbers if n != a and n != b]
        labels: dict[str, str] = {}
        legs = []
        for index, number in enumerate(order):
            label = labels[number] = chr(ord("A") + index) if index < 26 else f"L{index + 1}"
            state, answer = numbers.get(number) or (0, None)
            caller = cdr.get(_CDR_CALLER.get(label, "")) or self.callers.get(number)
            answer = cdr.get(_CDR_ANSWER.get(label, "")) or answer
            leg: dict[str, Any] = {"leg": label, "called": number, "caller": caller,
                                   "state": ev.STATES[ev.ENDED if ended else state]}
            if answer is not None:
                leg["answerTime"] = answer
            legs.append(leg)
        return legs, labels

    def _no_recording(self, cdr: dict[str, Any] | None) -> dict[str, Any]:
        """Without word from the downloader: ``none`` with why when the CDR says there is no recording to fetch
        (the rule the downloader applies: a callback, ``recordFlag`` set, B talked at least 3 s), else
        ``pending``. The platform sets no ``recordFlag`` on a call under 3 s, so that reason goes first."""
        if cdr is None:
            return {"status": "pending"}
        if self.service_type is not None and not huawei.is_callback(self.service_type):
            return {"status": "none", "why": "not-callback"}
        answered, ended = cdr.get("fwdAnswerTime"), cdr.get("callEndTime")
        if answered is None:
            return {"status": "none", "why": "not-answered"}
        try:
            talk = (ev.epoch_ms(ended) - ev.epoch_ms(answered)) / 1000 if ended else None
        except ValueError:  # a time kept as received because it could not be read: the downloader rejects it too
            talk = None
        if talk is not None and talk < huawei.MIN_RECORDED_SECONDS:
            return {"status": "none", "why": "under-3s"}
        if not huawei.record_flag_set(cdr.get("recordFlag")):
            return {"status": "none", "why": "not-recorded"}
        return {"status": "pending"}
