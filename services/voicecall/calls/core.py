"""The calls core of one partition number: input records in → the call's new record out; timers; no I/O.

The state is the last record of every call of the partition (its value bytes, ~1 KiB), exactly what the stage
published on the compacted ``calls`` topic, from which it is restored (the shell writes a core's records to the
calls partition numbered like its inputs). An input that changes nothing (a duplicate) writes nothing.

Timers (by wall clock, fired from :meth:`CallsCore.tick`): a call ended by a disconnect and still without CDR
``grace`` after the disconnect's own time becomes ``cdr: missing``; a call whose ``updatedAt`` is ``retention`` old
leaves the state and the topic (a tombstone). Their index is rebuilt from the state after a restore.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall.calls import inputs
from voicecall.calls.call import OVERFLOW_HEADER, Call
from voicecall.calls.inputs import Rejected, Update
from voicecall.calls.timers import Wheel
from voicecall.runtime import cloudevents, deadletter
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

STAGE = "calls"
SOURCE = "/voicecall/calls"
REPLAY_HEADER = "voicecall-replay-id"
CHANGED, UNCHANGED, REJECTED = "changed", "unchanged", "rejected"


@dataclass(frozen=True)
class Topics:
    """Full topic names: the five inputs, the output and the deadletter topic."""

    status: str
    fee: str
    billing: str
    stored: str
    failed: str
    calls: str
    deadletter: str

    def kinds(self) -> dict[str, str]:
        return {self.status: inputs.STATUS, self.fee: inputs.CDR, self.billing: inputs.BILLING,
                self.stored: inputs.STORED, self.failed: inputs.FAILED}


@dataclass(slots=True)
class Result:
    outputs: list[Record]
    outcome: str  # CHANGED, UNCHANGED or REJECTED
    kind: str | None = None  # the input's kind (inputs.STATUS, …)
    reason: Reason | None = None
    late_cdr: bool = False  # a CDR for a call flagged missing


@dataclass(slots=True)
class TickResult:
    outputs: list[Record] = field(default_factory=list)
    missing: int = 0
    expired: int = 0
    errors: int = 0


class CallsCore:
    def __init__(self, partition: int, topics: Topics, *, grace: float, retention: float,
                 max_payload: int = 512 * 1024) -> None:
        self.partition = partition
        self.topics = topics
        self.kinds = topics.kinds()
        self.grace = grace
        self.retention = retention
        self.max_payload = max_payload
        self.calls: dict[str, bytes] = {}  # sessionId → its record's value
        self.overflow: dict[str, bytes] = {}  # sessionId → its record's overflow header (rare)
        self.nbytes = 0  # of the values held
        self.cdr_timers = Wheel.for_delay(grace, high=60.0)
        self.expiry = Wheel.for_delay(retention, high=3600.0)
        self.indexed = True
        self.corrupt = 0  # restored records that could not be read when the timers were indexed (dropped)

    # -- processing ---------------------------------------------------------------------------------------------

    def process(self, record: ConsumerRecord) -> list[Record]:
        return self.evaluate(record).outputs

    def evaluate(self, record: ConsumerRecord) -> Result:
        if not self.indexed:
            self._index()
        kind = self.kinds.get(record.topic)
        if kind is None:
            raise ValueError(f"{record.topic} is not an input of the calls stage")
        update = inputs.read(kind, record)
        if isinstance(update, Rejected):
            return Result([deadletter.for_record(record, update.reason, STAGE, self.topics.deadletter,
                                                 detail=update.detail, parsed=update.parsed,
                                                 max_bytes=self.max_payload)], REJECTED, kind, update.reason)
        session_id = sys.intern(update.session_id)  # one string shared by the state and the timer index
        call = self._load(session_id)
        before = self._timers(call)
        late = update.kind == inputs.CDR and call.cdr is not None and call.cdr["status"] == "missing"
        if not _apply(call, update):
            return Result([], UNCHANGED, kind)
        call.touch(update.input_ms)
        return Result([self._save(call, before)], CHANGED, kind, late_cdr=late)

    def _load(self, session_id: str) -> Call:
        value = self.calls.get(session_id)
        return Call(session_id) if value is None else Call.load(value, self.overflow.get(session_id))

    def _timers(self, call: Call) -> tuple[float | None, float | None]:
        expires = call.updated_ms / 1000 + self.retention if call.updated_ms else None
        return call.cdr_due(self.grace), expires

    def _save(self, call: Call, before: tuple[float | None, float | None]) -> Record:
        record = call.render()
        value = orjson.dumps(record)
        overflow = call.overflow_header()
        key = call.session_id
        self.nbytes += len(value) - len(self.calls.get(key, b""))
        self.calls[key] = memoryview(value).tobytes()  # orjson's bytes keep its whole ~8 KiB buffer
        if overflow is not None:
            self.overflow[key] = overflow
        after = self._timers(call)
        self.cdr_timers.move(key, before[0], after[0])
        self.expiry.move(key, before[1], after[1])
        headers = cloudevents.headers(cloudevents.TYPE_CALL, SOURCE, hashlib.blake2b(value, digest_size=16).hexdigest(),
                                      record["updatedAt"])
        if overflow is not None:
            headers.append((OVERFLOW_HEADER, overflow))
        return Record(self.topics.calls, key.encode(), value, headers)

    # -- restoring ----------------------------------------------------------------------------------------------

    def restore(self, record: ConsumerRecord) -> None:
        """One record of the calls topic (the stage's own output). A copy made by ``voicecall replay copy`` is
        ignored: the state is what the stage itself wrote. A record that is not one of the stage's raises."""
        if record.key is None:
            raise ValueError("a calls record without a key")
        key = sys.intern(record.key.decode())
        value = record.value
        headers = dict(record.headers or ())
        if REPLAY_HEADER in headers:
            return
        if value is not None and not value.startswith(b'{"sessionId":'):
            raise ValueError("not a record of the calls stage")
        self.indexed = False
        self.nbytes -= len(self.calls.pop(key, b""))
        self.overflow.pop(key, None)
        if value is not None:
            self.calls[key] = memoryview(value).tobytes()  # orjson's bytes keep its whole ~8 KiB buffer
            self.nbytes += len(value)
            if OVERFLOW_HEADER in headers:
                self.overflow[key] = headers[OVERFLOW_HEADER]

    def _index(self) -> None:
        """The timers of every restored call (after the last restored record, before the first input)."""
        self.cdr_timers = Wheel(self.cdr_timers.width)
        self.expiry = Wheel(self.expiry.width)
        for key in list(self.calls):
            try:
                due, expires = self._timers(self._load(key))
            except (ValueError, KeyError, TypeError):  # not readable after all: dropped, counted
                self.nbytes -= len(self.calls.pop(key))
                self.overflow.pop(key, None)
                self.corrupt += 1
                continue
            self.cdr_timers.move(key, None, due)
            self.expiry.move(key, None, expires)
        self.indexed = True

    # -- timers --------------------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Record]:
        return self.tick_result(now).outputs

    def tick_result(self, now: float) -> TickResult:
        if not self.indexed:
            self._index()
        result = TickResult()
        # Exact: by the time a slot of the CDR wheel comes due, it holds only the calls still without CDR (few).
        for key in self.cdr_timers.due(now, current=True):
            try:
                call = self._load(key)
                due = call.cdr_due(self.grace)
                if due is None or key not in self.calls:
                    continue
                if due > now:  # not yet
                    self.cdr_timers.move(key, None, due)
                    continue
                before = self._timers(call)
                call.mark_missing(due)
                result.outputs.append(self._save(call, before))
                result.missing += 1
            except Exception:  # this call stays as it was; tried again a minute later
                self.cdr_timers.move(key, None, now + 60.0)
                result.errors += 1
        for key in self.expiry.due(now):
            value = self.calls.get(key)
            if value is None:
                continue
            try:
                call = self._load(key)
            except Exception:
                self.expiry.move(key, None, now + 60.0)
                result.errors += 1
                continue
            due, expires = self._timers(call)
            if expires is not None and expires > now:
                self.expiry.move(key, None, expires)
                continue
            self.cdr_timers.move(key, due, None)
            self.nbytes -= len(self.calls.pop(key))
            self.overflow.pop(key, None)
            result.outputs.append(Record(self.topics.calls, key.encode(), None, []))  # tombstone: no CE headers
            result.expired += 1
        return result


def _apply(call: Call, update: Update) -> bool:
    kind = update.kind
    if kind == inputs.STATUS:
        return call.add_event(*update.data)
    if kind == inputs.CDR:
        return call.set_cdr(update.data, update.app_key, update.service_type)
    if kind == inputs.BILLING:
        return call.set_billing(update.data, update.app_key, update.service_type)
    return call.set_recording(update.data)


def state_of(core: Any) -> CallsCore:
    """The CallsCore inside a (metered) core."""
    return core if isinstance(core, CallsCore) else core.core  # type: ignore[no-any-return]
