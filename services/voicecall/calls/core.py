"""The calls core of one partition number: input records in → the call's new record out; timers; no I/O.

The state is the facts of every call of the partition, packed (:mod:`.state`, ~40 % of the record they render
to), but for the calls in progress, kept decoded. The record the stage publishes on the compacted ``calls`` topic
holds the same facts, so the state is restored from that topic (the shell writes a core's records to the calls
partition numbered like its inputs). An input that changes nothing (a duplicate) writes nothing.

Timers (by wall clock, fired from :meth:`CallsCore.tick`): a call ended by a disconnect and still without CDR
``grace`` after the disconnect's own time becomes ``cdr: missing``; a call whose ``updatedAt`` is ``retention`` old
leaves the state and the topic (a tombstone). Their index is rebuilt while the state is restored.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall.calls import inputs, state
from voicecall.calls.call import OVERFLOW_HEADER, Call
from voicecall.calls.inputs import Rejected, Update
from voicecall.calls.timers import Wheel
from voicecall.runtime import cloudevents, deadletter
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

STAGE = "calls"
SOURCE = "/voicecall/calls"
# Calls kept decoded per partition, the most recently changed (VOICECALL_CALLS_HOT): the calls in progress take
# their next input without being unpacked and packed again; the others are packed.
HOT_CALLS = 8192
CHANGED, UNCHANGED, REJECTED = "changed", "unchanged", "rejected"
_SPEC, _SOURCE, _TYPE, _CONTENT_TYPE = (("ce_specversion", cloudevents.SPECVERSION), ("ce_source", SOURCE.encode()),
                                        ("ce_type", cloudevents.TYPE_CALL.encode()),
                                        ("content-type", cloudevents.CONTENT_TYPE))


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
                 max_payload: int = 512 * 1024, hot: int | None = None) -> None:
        self.partition = partition
        self.topics = topics
        self.kinds = topics.kinds()
        self.grace = grace
        self.retention = retention
        self.max_payload = max_payload
        self.calls: dict[str, bytes] = {}  # sessionId → its packed facts (every call not in ``hot``)
        self.hot: dict[str, Call] = {}  # sessionId → its facts, least recently changed first
        self.hot_max = HOT_CALLS if hot is None else hot
        self.nbytes = 0  # of the packed facts held
        self.cdr_timers = Wheel.for_delay(grace, high=60.0)
        self.expiry = Wheel.for_delay(retention, high=3600.0)

    # -- processing ---------------------------------------------------------------------------------------------

    def process(self, record: ConsumerRecord) -> list[Record]:
        return self.evaluate(record).outputs

    def evaluate(self, record: ConsumerRecord) -> Result:
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

    def __len__(self) -> int:
        return len(self.calls) + len(self.hot)

    def current(self, session_id: str) -> Call | None:
        """The call's facts as they stand (not to be changed: :meth:`_load` gives a copy to work on)."""
        call = self.hot.get(session_id)
        if call is None and (packed := self.calls.get(session_id)) is not None:
            call = state.unpack(session_id, packed)
        return call

    def snapshot(self) -> dict[str, bytes]:
        """Every call's packed facts (for tests and diagnostics)."""
        return {**self.calls, **{key: state.pack(call) for key, call in self.hot.items()}}

    def _load(self, session_id: str) -> Call:
        """A call to apply an input to: the state itself changes only in :meth:`_save`, once its record is made."""
        call = self.hot.get(session_id)
        if call is not None:
            return call.copy()
        packed = self.calls.get(session_id)
        return Call(session_id) if packed is None else state.unpack(session_id, packed)

    def _keep(self, call: Call) -> None:
        key = call.session_id
        self.hot.pop(key, None)
        self.hot[key] = call
        packed = self.calls.pop(key, None)
        if packed is not None:
            self.nbytes -= len(packed)
        if len(self.hot) > self.hot_max:
            key = next(iter(self.hot))
            packed = memoryview(state.pack(self.hot.pop(key))).tobytes()  # orjson's bytes keep their ≥ 8 KiB
            self.calls[key] = packed
            self.nbytes += len(packed)

    def _drop(self, key: str) -> None:
        self.hot.pop(key, None)
        self.nbytes -= len(self.calls.pop(key, b""))

    def _timers(self, call: Call) -> tuple[float | None, float | None]:
        expires = call.updated_ms / 1000 + self.retention if call.updated_ms else None
        return call.cdr_due(self.grace), expires

    def _save(self, call: Call, before: tuple[float | None, float | None]) -> Record:
        record = call.render()
        value = orjson.dumps(record)
        overflow = call.overflow_header()
        key = call.session_id
        self._keep(call)
        after = self._timers(call)
        self.cdr_timers.move(key, before[0], after[0])
        self.expiry.move(key, before[1], after[1])
        headers = [_SPEC, ("ce_id", hashlib.blake2b(value, digest_size=16).hexdigest().encode()), _SOURCE, _TYPE,
                   ("ce_time", record["updatedAt"].encode()), _CONTENT_TYPE]  # as cloudevents.headers makes them
        if overflow is not None:
            headers.append((OVERFLOW_HEADER, overflow))
        return Record(self.topics.calls, key.encode(), value, headers)

    # -- restoring ----------------------------------------------------------------------------------------------

    def restore(self, record: ConsumerRecord) -> None:
        """One record of the calls topic (the stage's own output), in offset order. A copy made by ``voicecall
        replay copy`` is ignored: the state is what the stage itself wrote. A record that is not one of the stage's
        raises, without changing anything. Each version of a call is filed in the timer wheels where its timers
        fall; an earlier version's entry stays behind and is dropped when its slot comes (timers are checked
        against the call when they fire)."""
        if record.key is None:
            raise ValueError("a calls record without a key")
        key = sys.intern(record.key.decode())
        headers = dict(record.headers or ())
        if cloudevents.REPLAY_ID in headers:
            return
        if record.value is None:
            self._drop(key)
            return
        if not record.value.startswith(b'{"sessionId":'):
            raise ValueError("not a record of the calls stage")
        call = Call.load(record.value, headers.get(OVERFLOW_HEADER))
        packed = memoryview(state.pack(call)).tobytes()
        due, expires = self._timers(call)
        self._drop(key)
        self.calls[key] = packed
        self.nbytes += len(packed)
        self.cdr_timers.move(key, None, due)
        self.expiry.move(key, None, expires)

    # -- timers --------------------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Record]:
        return self.tick_result(now).outputs

    def tick_result(self, now: float) -> TickResult:
        result = TickResult()
        # Exact: by the time a slot of the CDR wheel comes due, it holds only the calls still without CDR (few).
        for key in self.cdr_timers.due(now, current=True):
            try:
                call = self._load(key)
                due = call.cdr_due(self.grace)
                if due is None:
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
            if key not in self.calls and key not in self.hot:
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
            self._drop(key)
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
