"""Inputs of the calls stage made from the simulator's calls: the status pushes as ``status.raw`` records, the CDR as
``fee.unique``, the billing core's record as ``billing``, and ``recording.stored`` for the recorded calls — what the
pipeline in front of the stage would write for them."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from kafka_helpers import produce, settings_values
from voicecall import topics
from voicecall.billing.core import BillingCore
from voicecall.billing.tariff import Tariff
from voicecall.calls.config import CallsSettings
from voicecall.calls.core import CallsCore, Topics
from voicecall.ingress.parse import content_id, event_time
from voicecall.runtime import cloudevents
from voicecall.simulator.calls import generate
from voicecall.simulator.model import Call, CallOptions

PREFIX = "voicecall."
TOPICS = Topics(status=f"{PREFIX}status.raw", fee=f"{PREFIX}fee.unique", billing=f"{PREFIX}billing",
                stored=f"{PREFIX}recording.stored", failed=f"{PREFIX}recording.failed", calls=f"{PREFIX}calls",
                deadletter=f"{PREFIX}deadletter")
# (topic suffix, key, value, headers): what to produce for one input
Raw = tuple[str, bytes, bytes, list[tuple[str, bytes]]]
_BILLING = BillingCore(billing_topic=TOPICS.billing, deadletter_topic=TOPICS.deadletter,
                       tariff=Tariff("CNY", {"001": 18, "002": 18}))


def calls(count: int, seed: int = 7, start: datetime | None = None, **options: Any) -> list[Call]:
    """Simulated calls; by default they started two hours ago, so that even the longest one is over (an input
    stamped far ahead of the time it was produced is not believed: calls/inputs.py)."""
    begin = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    return list(generate(CallOptions(seed=seed, start=begin, **options), count))


def status_raw(event: Any) -> Raw:
    info = event.body["statusInfo"]
    event_type = event.body["eventType"]
    received = cloudevents.header(cloudevents.headers("x", "/t"), "ce_time") or ""
    headers = cloudevents.headers(cloudevents.TYPE_STATUS + event_type, "/voicecall/ingress",
                                  content_id(info, event_type), event_time(info.get("timestamp"), received))
    return "status.raw", info["sessionId"].encode(), orjson.dumps(info), headers


def fee_unique(call: Call) -> Raw:
    fee = call.fee
    headers = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/ingress", content_id(fee),
                                  event_time(fee.get("callEndTime"), ""))
    return "fee.unique", call.session_id.encode(), orjson.dumps(fee), headers


def billing(call: Call) -> Raw:
    (out,) = _BILLING.process(record("fee.unique", *fee_unique(call)[1:]))
    return "billing", out.key or b"", out.value or b"", out.headers


def stored(call: Call) -> Raw:
    name = call.recording.file_name if call.recording else "x.wav"
    value = {"sessionId": call.session_id, "recordObjectName": name, "uri": f"s3://bucket/recordings/{name}",
             "bytes": 1000, "sha256": hashlib.sha256(name.encode()).hexdigest()}
    return ("recording.stored", call.session_id.encode(), orjson.dumps(value),
            cloudevents.headers(cloudevents.TYPE_RECORDING_STORED, "/voicecall/recordings"))


def inputs_of(call: Call, *, cdr: bool = True) -> list[Raw]:
    """Every input the stage gets for ``call``: its status pushes (in the call's order), then the CDR, its billing
    record and, when recorded, its stored recording (all but the status pushes left out with ``cdr=False``)."""
    out = [status_raw(event) for event in call.status]
    if cdr:
        out += [fee_unique(call), billing(call)]
        if call.recording is not None:
            out.append(stored(call))
    return out


def record(suffix: str, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]] = (),
           offset: int = 0, timestamp: int | None = None) -> ConsumerRecord[bytes, bytes]:
    stamp = timestamp if timestamp is not None else int(datetime.now(UTC).timestamp() * 1000)
    return ConsumerRecord(topic=PREFIX + suffix, partition=0, offset=offset, timestamp=stamp, timestamp_type=0,
                          key=key, value=value, checksum=None, serialized_key_size=len(key or b""),
                          serialized_value_size=len(value or b""), headers=tuple(headers))


def core(grace: float = 7 * 3600.0, retention: float = 14 * 86400.0) -> CallsCore:
    return CallsCore(0, TOPICS, grace=grace, retention=retention)


def feed(target: CallsCore, raws: Iterable[Raw], timestamp: int | None = None) -> list[Any]:
    """Process the inputs in order; returns the outputs."""
    out = []
    for offset, (suffix, key, value, headers) in enumerate(raws):
        out.extend(target.process(record(suffix, key, value, headers, offset, timestamp)))
    return out


def published(target: CallsCore, session_id: str) -> bytes:
    """The record the core would publish for the call now (its state is kept packed)."""
    call = target.current(session_id)
    assert call is not None, session_id
    return orjson.dumps(call.render())


def final(target: CallsCore, session_id: str) -> dict[str, Any]:
    return orjson.loads(published(target, session_id))  # type: ignore[no-any-return]


# -- on the broker ----------------------------------------------------------------------------------------------


class KafkaCallsSettings(CallsSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> KafkaCallsSettings:
    return KafkaCallsSettings(**settings_values(bootstrap, prefix, **overrides))


def env_for(settings: KafkaCallsSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall calls`` subprocess needs to work on the test's broker and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_METRICS_PORT": "0", "VOICECALL_METRICS_HOST": "127.0.0.1", "VOICECALL_LOG_FORMAT": "json",
        "VOICECALL_BATCH_TIME": str(settings.batch_time), "VOICECALL_BATCH_RECORDS": str(settings.batch_records),
        "VOICECALL_CONSUMER_SESSION_TIMEOUT": str(settings.consumer_session_timeout),
        "VOICECALL_CALLS_CDR_GRACE": str(settings.calls_cdr_grace),
        "VOICECALL_CALLS_RETENTION": str(settings.calls_retention),
        "VOICECALL_CALLS_TIMER_INTERVAL": str(settings.calls_timer_interval),
    })
    env.update(extra)
    return env


async def produce_raws(settings: KafkaCallsSettings, raws: Iterable[Raw]) -> None:
    """Produce each input to its topic (one producer, in order)."""
    by_topic: dict[str, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
    for suffix, key, value, headers in raws:
        by_topic.setdefault(suffix, []).append((key, value, headers))
    await asyncio.gather(*(produce(settings, suffix, records) for suffix, records in by_topic.items()))


def finals(outputs: Iterable[Any]) -> dict[str, bytes | None]:
    """sessionId → its last value (None: a tombstone) among records read from the calls topic."""
    last: dict[str, bytes | None] = {}
    for out in outputs:
        last[out.key.decode()] = out.value
    return last


def references(raws: Iterable[Raw]) -> dict[str, bytes]:
    """What a clean run ends with: every call's final record from the pure core (the record does not depend on
    the order of the inputs: tests/calls/test_calls_order.py)."""
    target = core()
    feed(target, raws)
    return {session_id: published(target, session_id) for session_id in target.snapshot()}
