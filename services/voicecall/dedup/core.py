"""The dedup core of one ``fee.raw`` partition: record in → outputs out, no I/O.

Identity is the CDR's ``sessionId`` (kept as a 64-bit blake2b hash); content is a 64-bit blake2b fingerprint of the
canonical record: keys sorted, whitespace runs inside ``…Time`` fields collapsed (old platforms send two spaces),
and ``""``/``null`` times dropped like absent ones (Huawei's CDR pages do not say which form an unanswered leg uses,
so a re-push that switched forms must still count as the same CDR).

- first sight → the record goes to ``fee.unique`` unchanged (value, key, headers) and its state entry to the
  changelog (key = 8-byte id hash, value = 8-byte fingerprint + 4-byte window time);
- same id, same fingerprint, within the window → dropped and counted;
- same id, different fingerprint, within the window → the first stays; this one goes to ``deadletter`` with reason
  ``conflicting-duplicate`` and both fingerprints, for a human to decide;
- no value, not JSON, not a JSON object, nested too deep to fingerprint, no usable ``sessionId`` → ``deadletter``
  (``empty-value``, ``not-json``, ``not-an-object``, ``invalid-shape``, ``missing-session-id``).

The window is measured on the call's ``callEndTime``, not on when a copy was received. Every copy of a CDR — the
platform's six hourly re-pushes and a support engineer's manual push days later — carries the same
``callEndTime``, so whether a copy is a duplicate depends only on the data: a replay of ``fee.raw`` or a restart
after a long outage decides exactly as the first run did, and a consumer lag of hours does not shift the window.
The window's clock is the newest (accepted) ``callEndTime`` seen on the partition; an entry expires when it is
more than the window older than that clock. A record whose ``callEndTime`` is already outside the window passes
(the window has no memory of it) and is not remembered. Receive time (the ingress's ``voicecall_received``
header, else the Kafka timestamp) stands in when a record has no readable ``callEndTime``, and bounds it: a
``callEndTime`` more than ``max_skew`` ahead of receipt is not believed, so one bad clock cannot expire the state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from voicecall import huawei
from voicecall.dedup.state import State
from voicecall.runtime import cloudevents, deadletter, times
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

STAGE = "dedup"
SOURCE = "/voicecall/dedup"
MAX_MOMENT = 0xFFFF_FFFF  # the state keeps window times as unsigned 32-bit seconds
SWEEP_SLOTS = 32  # table slots checked for expiry per record: a full pass every capacity/32 records

_ENTRY = struct.Struct(">QI")
_KEY = struct.Struct(">Q")
_unpack_entry = _ENTRY.unpack_from

# What became of a record (Result.outcome).
UNIQUE, DUPLICATE, CONFLICT, REJECTED = "unique", "duplicate", "conflict", "rejected"


def id_hash(session_id: str) -> int:
    value = int.from_bytes(blake2b(session_id.encode(), digest_size=8, person=b"sessionId").digest(), "big")
    return value or 1  # 0 marks an empty slot in the state table


def canonical(doc: dict[str, Any]) -> bytes:
    fixes: dict[str, str] | None = None
    for key, value in doc.items():
        if key[-4:] == "Time" and (value is None or value.__class__ is str):
            # Already normal (the common case): non-empty, no whitespace but single inner ASCII spaces.
            if value and value.isprintable() and "  " not in value and value[0] != " " and value[-1] != " ":
                continue
            normal = huawei.normalise_time(value) if value is not None else ""
            if normal != value or normal == "":
                if fixes is None:
                    fixes = {}
                fixes[key] = normal
    if fixes is not None:  # rare: copy only when a time needs it
        doc = {k: fixes.get(k, v) for k, v in doc.items() if fixes.get(k) != ""}  # "" = drop
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def fingerprint(doc: dict[str, Any]) -> int:
    return int.from_bytes(blake2b(canonical(doc), digest_size=8).digest(), "big")


def encode_entry(fp: int, moment: int) -> bytes:
    return _ENTRY.pack(fp, moment)


def decode_entry(value: bytes) -> tuple[int, int]:
    fp, moment = _ENTRY.unpack_from(value)
    return int(fp), int(moment)


def epoch_seconds(value: object) -> int | None:
    """A Huawei UTC time → seconds since the epoch (None when absent, empty or unreadable); the common exact
    ``yyyy-MM-dd HH:mm:ss`` form is computed directly, anything else goes through :func:`huawei.parse_time`."""
    if value.__class__ is str and len(value) == 19 and value[10] == " ":  # type: ignore[arg-type]
        text: str = value  # type: ignore[assignment]
        try:
            return times.timegm(int(text[0:4]), int(text[5:7]), int(text[8:10]),
                                int(text[11:13]), int(text[14:16]), int(text[17:19]))
        except ValueError:
            pass
    try:
        moment = huawei.parse_time(value)
    except huawei.BadTime:
        return None
    return int(moment.timestamp()) if moment is not None else None


def _received(record: ConsumerRecord) -> int:
    """Seconds since the epoch the record was received: the ingress header, else the Kafka timestamp."""
    for name, raw in record.headers or ():
        if name == cloudevents.RECEIVED and raw:
            try:
                text = raw.decode().strip().replace("Z", "+00:00")
                return int(datetime.fromisoformat(text).timestamp())
            except ValueError:
                break
    return int(record.timestamp // 1000)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more (one per record)
class Result:
    """What one record turned into: the outputs, and what the shell counts about them."""

    outputs: list[Record]
    outcome: str  # UNIQUE, DUPLICATE, CONFLICT or REJECTED
    reason: Reason | None = None  # REJECTED: the deadletter reason
    outside: bool = False  # UNIQUE, but already older than the window: passed, not remembered
    expired: int = 0  # state entries expired on the way (their tombstones are among the outputs)


@dataclass(eq=False)  # identity semantics: live cores are tracked in a WeakSet for the state gauges
class DedupCore:
    """The state and decisions of one input partition (see the module docstring)."""

    partition: int
    unique_topic: str
    deadletter_topic: str
    changelog_topic: str
    window: float
    max_skew: float = 3600.0
    max_payload: int = 512 * 1024
    state: State = field(default_factory=State)
    clock: int = 0  # newest window time accepted on this partition

    def window_time(self, doc: dict[str, Any], record: ConsumerRecord) -> int:
        # Kept in the state's 4-byte unsigned field: a producer-set timestamp past 2106 must not overflow it.
        ended = epoch_seconds(doc.get("callEndTime"))
        if ended is None:
            return max(0, min(_received(record), MAX_MOMENT))
        # The Kafka timestamp (the ingress's produce time) bounds it; cheaper than parsing the header every time.
        return max(0, min(ended, int(record.timestamp) // 1000 + int(self.max_skew), MAX_MOMENT))

    def process(self, record: ConsumerRecord) -> list[Record]:
        return self.evaluate(record).outputs

    def evaluate(self, record: ConsumerRecord) -> Result:
        if record.value is None:
            return self._reject(record, Reason.EMPTY_VALUE, "the record has no value (a tombstone?)")
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError as error:
            return self._reject(record, Reason.NOT_JSON, f"not JSON: {error}")
        if not isinstance(doc, dict):
            return self._reject(record, Reason.NOT_AN_OBJECT, f"a fee record is a JSON object, got "
                                                              f"{type(doc).__name__}", doc)
        session_id = doc.get("sessionId")
        if not isinstance(session_id, str) or not session_id.strip():
            return self._reject(record, Reason.MISSING_SESSION_ID,
                                f"sessionId is missing or empty: {session_id!r}"[:200], doc)
        try:
            fp = fingerprint(doc)
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels): no CDR is, keep the raw
            return self._reject(record, Reason.INVALID_SHAPE, "nested too deeply to fingerprint")
        key = id_hash(session_id)
        moment = self.window_time(doc, record)
        cutoff = self.clock - self.window
        entry = self.state.get(key)
        if entry is not None and entry[1] >= cutoff:
            if entry[0] == fp:
                return Result([], DUPLICATE)
            return Result([deadletter.for_record(
                record, Reason.CONFLICTING_DUPLICATE, STAGE, self.deadletter_topic,
                detail="the sessionId was seen before with other content; the first one was kept", parsed=doc,
                max_bytes=self.max_payload, sessionId=session_id,
                fingerprints={"first": f"{entry[0]:016x}", "later": f"{fp:016x}"})], CONFLICT)
        result = Result([self._unique(record, session_id, fp)], UNIQUE)
        outputs = result.outputs
        key_bytes = _KEY.pack(key)
        if moment < cutoff:
            result.outside = True
            if entry is not None:  # expired, not yet swept: forget it now
                self.state.delete(key)
                outputs.append(Record(self.changelog_topic, key_bytes, None, []))
                result.expired = 1
        else:
            self.state.put(key, fp, moment)
            outputs.append(Record(self.changelog_topic, key_bytes, encode_entry(fp, moment), []))
            if moment > self.clock:
                self.clock = moment
        removed = self.state.sweep(int(self.clock - self.window), SWEEP_SLOTS)
        if removed:
            result.expired += len(removed)
            outputs.extend(Record(self.changelog_topic, _KEY.pack(key), None, []) for key in removed)
        return result

    def restore(self, record: ConsumerRecord) -> None:
        """Apply one changelog record; raises ``ValueError``, state unchanged, on one this core did not write (a
        key that is not a non-zero 8-byte hash, a value neither a tombstone nor 12 bytes). A tombstone of a key no
        entry can have is nothing to forget: that is how a foreign record is cleared from the changelog."""
        raw_key, value = record.key, record.value
        fits = raw_key is not None and len(raw_key) == _KEY.size
        if value is None:
            if fits:
                self.state.delete(int.from_bytes(raw_key, "big"))
            return
        if not fits:
            raise ValueError(f"the key is not an 8-byte sessionId hash: "
                             f"{'none' if raw_key is None else f'{len(raw_key)} bytes'}")
        key = int.from_bytes(raw_key, "big")
        if key == 0:  # marks an empty slot of the state table; id_hash never returns it
            raise ValueError("the key is 0, which no sessionId hashes to")
        if len(value) != _ENTRY.size:
            raise ValueError(f"the value is {len(value)} bytes, not a 12-byte entry (fingerprint, window time)")
        fp, moment = _unpack_entry(value)
        self.state.put(key, fp, moment)
        if moment > self.clock:
            self.clock = moment

    def _unique(self, record: ConsumerRecord, session_id: str, fp: int) -> Record:
        headers: list[tuple[str, bytes]] = list(record.headers or ())
        if cloudevents.header(headers, "ce_id") is None:
            # Not from our ingress: give it the fee record's CloudEvents headers, with an id stable across runs.
            headers = cloudevents.headers(cloudevents.TYPE_FEE, SOURCE, ce_id=f"{session_id}/{fp:016x}",
                                          extra=headers)
        key = record.key if record.key is not None else session_id.encode()
        return Record(self.unique_topic, key, record.value, headers)

    def _reject(self, record: ConsumerRecord, reason: Reason, detail: str, doc: Any = deadletter.UNPARSED
                ) -> Result:
        return Result([deadletter.for_record(record, reason, STAGE, self.deadletter_topic, detail=detail,
                                             parsed=doc, max_bytes=self.max_payload)], REJECTED, reason)
