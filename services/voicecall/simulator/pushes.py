"""What the platform pushes and when: status bodies, merged fee bodies, the answer check, push headers.

Pure. :func:`timeline` turns calls (in start order) into the ordered stream of things the platform does:
a call starting, a status push, a fee push. Fee records of calls whose ``callEndTime`` is the same second are
merged into pushes of at most 50 records, sent when that second is over (reference §2.1).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from voicecall import huawei
from voicecall.simulator.calls import Call

MAX_FEE_RECORDS = 50
CONTENT_TYPE = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class CallStarted:
    at: float
    call: Call


@dataclass(frozen=True)
class StatusPush:
    at: float
    session_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class FeePush:
    at: float
    records: tuple[dict[str, Any], ...]
    body: bytes

    @property
    def session_ids(self) -> list[str]:
        return [str(record["sessionId"]) for record in self.records]


Emission = CallStarted | StatusPush | FeePush


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


def timeline(calls: Iterable[Call]) -> Iterator[Emission]:
    """Everything the platform does, in simulated-time order. Lazy: reads calls only as far as needed."""
    heap: list[tuple[float, int, int, Any]] = []
    order = itertools.count()
    pending: dict[int, list[dict[str, Any]]] = {}
    source = iter(calls)
    upcoming = next(source, None)
    while heap or upcoming is not None:
        # A call can only add events at or after its start: admit every call starting before the next event.
        while upcoming is not None and (not heap or upcoming.start <= heap[0][0]):
            yield CallStarted(upcoming.start, upcoming)
            for event in upcoming.status:
                heapq.heappush(heap, (event.at, _STATUS, next(order), (upcoming.session_id, event)))
            heapq.heappush(heap, (upcoming.end, _FEE_END, next(order), upcoming))
            upcoming = next(source, None)
        if not heap:
            break
        at, kind, _, item = heapq.heappop(heap)
        if kind == _STATUS:
            session_id, event = item
            yield StatusPush(at, session_id, str(event.body["eventType"]), status_body(event.body))
        elif kind == _FEE_END:
            second = item.end_second
            if second not in pending:
                pending[second] = []
                heapq.heappush(heap, (float(second + 1), _FLUSH, next(order), second))
            pending[second].append(item.fee)
        else:
            for records, body in fee_bodies(pending.pop(item)):
                yield FeePush(at, records, body)


REPUSH_BODIES = ("same", "reordered")


def repush_body(records: tuple[dict[str, Any], ...], form: str, attempt: int) -> bytes | None:
    """The body of re-push number ``attempt`` (≥ 1), or ``None`` for the first push's bytes.

    Whether a re-push is byte-identical is UNCONFIRMED (reference §2.1): ``same`` resends the bytes, ``reordered``
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

    A 200 without a JSON body (or without ``resultcode``) counts as success, as the reference says the response
    parameters are optional; ``resultcode`` 0 as a number is read as "0" (the type is UNCONFIRMED).
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


def push_digest(app_secret: str, url: str, nonce: str, created: str, form: str) -> str:
    """PasswordDigest on pushes (UNCONFIRMED, reference §1.3): ``newline`` = HMAC-SHA256(secret, url\\nnonce\\ncreated)
    as the current pages say, ``concat`` = url+nonce+created as the 2022 page said, ``request`` = nonce+created
    like the request-side APIs."""
    if form == "request":
        return huawei.password_digest(app_secret, nonce, created)
    message = f"{url}\n{nonce}\n{created}" if form == "newline" else f"{url}{nonce}{created}"
    return base64.b64encode(hmac.new(app_secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


PUSH_SIGNATURES = ("newline", "concat", "request")
# Created on pushes (UNCONFIRMED, reference §1.3): the text says UTC+8 (Beijing time), the example ends in "Z".
PUSH_CREATED_ZONES = ("utc", "beijing")


def push_created(zone: str = "utc", now: datetime | None = None) -> str:
    """``Created`` of a push: UTC, or Beijing time (UTC+8) written with the same trailing ``Z`` as the doc's example."""
    if zone not in PUSH_CREATED_ZONES:
        raise ValueError(f"push Created zone must be one of {PUSH_CREATED_ZONES}")
    moment = now or datetime.now(UTC)
    if zone == "beijing":
        moment += timedelta(hours=8)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def push_headers(url: str, app_key: str | None = None, app_secret: str | None = None,
                 signature: str = "newline", created_zone: str = "utc") -> dict[str, str]:
    """Headers of one push; the documented ``Authorization``/``X-AKSK`` pair only when signing is on."""
    headers = {"Content-Type": CONTENT_TYPE}
    if app_key is not None and app_secret is not None:
        nonce = secrets.token_hex(16).upper()
        created = push_created(created_zone)
        digest = push_digest(app_secret, url, nonce, created, signature)
        headers["Authorization"] = huawei.AUTHORIZATION
        headers["X-AKSK"] = (f'UsernameToken Username="{app_key}",PasswordDigest="{digest}",'
                             f'Nonce="{nonce}",Created="{created}"')
    return headers
