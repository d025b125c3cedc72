"""Oversized and expanding pushes on the real broker: each is answered at once with the contract's JSON, its
deadletter record fits, and nothing behind it waits (the pushes of issue 21 that used to poison the spool)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from ingress_helpers import Ingress, fee_push, ingress_settings, start_ingress, status_push, wait_ready

from kafka_helpers import create_topics, read_all
from voicecall import topics
from voicecall.ingress import metrics, parse
from voicecall.ingress.app import PUBLISHER
from voicecall.ingress.limits import BATCH_HEADER, record_size
from voicecall.runtime import cloudevents
from voicecall.runtime.kafka import make_admin
from voicecall.runtime.record import Record

MIB = 1 << 20
HEAD = b'{"eventType":"callout","statusInfo":{"sessionId":"p-1","x":"'
TAIL = b'"}}'


def padded_status(size: int) -> bytes:
    return HEAD + b"p" * (size - len(HEAD) - len(TAIL)) + TAIL


def padded_fee(size: int, n: int = 1) -> bytes:
    """A fee push of ``n`` CDRs, exactly ``size`` bytes, the padding spread over the CDRs."""
    push = fee_push(n, tag=f"pad{size}-")
    empty = len(orjson.dumps({**push, "feeLst": [{**f, "x": ""} for f in push["feeLst"]]}))
    pad, extra = divmod(size - empty, n)
    push["feeLst"] = [{**f, "x": "f" * (pad + (extra if i == 0 else 0))} for i, f in enumerate(push["feeLst"])]
    body = orjson.dumps(push)
    assert len(body) == size
    return body


# body, answer, deadletter reason, and whether the deadletter payload is cut
ISSUE_BODIES: dict[str, tuple[bytes, int, str, bool]] = {
    "status push padded to exactly 1 MiB": (padded_status(MIB), 413, "too-large", True),
    "600,000-character sessionId": (orjson.dumps({"eventType": "callout", "statusInfo": {"sessionId": "s" * 600_000}}),
                                    413, "too-large", True),
    "200 KB of 0x01 bytes": (b"\x01" * 200_000, 400, "not-json", True),  # 1.2 MB once escaped
    # 500 KB parsed, 1.6 MB written again (1e9 → 1000000000.0): kept as the text received, whole
    "500 KB array of numbers": (b"[" + b",".join([b"1e9"] * 125_000) + b"]", 400, "not-an-object", False),
    "1.1 MiB of quotes": (b'"' * (MIB + MIB // 10), 413, "too-large", True),
}


async def set_max_message(settings: Any, suffix: str, size: int) -> None:
    """Set a topic's max.message.bytes and wait until the broker reports it (KRaft applies it a moment later)."""
    admin = make_admin(settings)
    await admin.start()
    resource = ConfigResource(ConfigResourceType.TOPIC, topics.name(settings, suffix),
                              configs={"max.message.bytes": str(size)})
    try:
        await admin.alter_configs([resource])
        for _ in range(100):
            (response,) = await admin.describe_configs([ConfigResource(
                ConfigResourceType.TOPIC, resource.name, configs={"max.message.bytes": None})])
            if response.resources[0][4][0][1] == str(size):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the broker does not report max.message.bytes={size} for {resource.name}")
    finally:
        await admin.close()


def size_of(record: Any) -> int:
    return record_size(Record(record.topic, record.key, record.value, list(record.headers))) + BATCH_HEADER


async def test_the_pushes_that_poisoned_the_spool_are_refused_and_block_nothing(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    spooled = metrics.SPOOLED._value.get()
    limit = ingress.app[PUBLISHER].limits.largest[topics.name(ingress.settings, "deadletter")]
    followers = []
    for name, (body, status, *_) in ISSUE_BODIES.items():
        code, answer = await post(f"{ingress.url}/notify/status", body)
        assert (code, answer["resultcode"]) == (status, "1"), (name, code, answer)
        follower = f"after-{uuid.uuid4().hex[:8]}"
        assert await post(f"{ingress.url}/notify/status", status_push(follower)) == (
            200, {"resultcode": "0", "resultdesc": "Success"}), name
        followers.append(follower)

    statuses = await read_all(ingress.settings, "status.raw", expect=len(followers), idle=3.0)
    assert Counter(r.key.decode() for r in statuses) == Counter(followers)  # each exactly once, nothing else
    dead = await read_all(ingress.settings, "deadletter", expect=len(ISSUE_BODIES), idle=1.0)
    values = [orjson.loads(r.value) for r in dead]
    assert sorted((v["reason"], v.get("truncated", False)) for v in values) == sorted(
        (reason, cut) for _, _, reason, cut in ISSUE_BODIES.values())
    for record, value in zip(dead, values, strict=True):
        assert size_of(record) <= limit, value["reason"]
        assert cloudevents.header(record.headers, "ce_type") == "voicecall.deadletter"
        if value["reason"] == "not-an-object":
            assert value["payload"] == ISSUE_BODIES["500 KB array of numbers"][0].decode()
    assert metrics.SPOOLED._value.get() == spooled  # every push went straight to Kafka
    ready = await wait_ready(ingress.url)
    assert ready["ready"] is True and ready["spool"]["entries"] == 0 and ready["spool"]["drain"] == "idle", ready


def largest_accepted(parser: parse.Parser, make: Callable[[int], bytes], low: int, high: int) -> int:
    """The largest size ``make`` builds a body of that the parser still accepts (``low`` fits, ``high`` does not)."""
    def accepted(size: int) -> bool:  # a push id as long as the first ones of a fresh ingress
        return parser.parse(make(size), received="2026-01-01T00:00:00.000Z", push_id="0123456789ab-1",
                            origin={"path": "/notify", "client": "127.0.0.1"}).status == 200

    assert accepted(low) and not accepted(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(middle) else (low, middle)
    return low


async def test_the_largest_push_of_each_kind_is_delivered_and_one_byte_more_is_413(
        ingress: Ingress, post: Callable[..., Any]) -> None:
    limits = ingress.app[PUBLISHER].limits
    parser = parse.Parser(ingress.settings, limits)
    largest = {
        "status": largest_accepted(parser, padded_status, 1000, MIB),
        "fee, one CDR": largest_accepted(parser, padded_fee, 2000, MIB),
    }
    print(f"largest bodies answered 200 and delivered: {largest}; "
          f"largest record: {limits.largest}; fee push of 2 CDRs: {MIB}")
    assert MIB - 2048 < largest["status"] < MIB and MIB - 2048 < largest["fee, one CDR"] < MIB

    async def delivered(url: str, body: bytes, suffix: str, key: str) -> bool:
        code, _ = await post(url, body)
        if code != 200:
            assert code == 413
            return False
        found = [r for r in await read_all(ingress.settings, suffix, expect=1, idle=0.5) if r.key.decode() == key]
        assert len(found) == 1 and len(found[0].value) > len(body) - 200
        return True

    status_url, fee_url = f"{ingress.url}/notify/status", f"{ingress.url}/notify/fee"
    assert await delivered(status_url, padded_status(largest["status"]), "status.raw", "p-1")
    assert not await delivered(status_url, padded_status(largest["status"] + 1), "status.raw", "p-1")
    fee = padded_fee(largest["fee, one CDR"])
    assert await delivered(fee_url, fee, "fee.raw", f"pad{len(fee)}-sess-0@callenabler245.huaweicaas.com")
    code, answer = await post(fee_url, padded_fee(largest["fee, one CDR"] + 1))
    assert code == 413 and "takes at most" in answer["resultdesc"]
    # Two CDRs of half a MiB each: the body limit is the only bound.
    code, _ = await post(fee_url, padded_fee(MIB, 2))
    assert code == 200
    code, answer = await post(fee_url, padded_fee(MIB + 1, 2))
    assert code == 413 and answer["resultdesc"] == f"body over {MIB} bytes"


async def test_a_topic_limit_below_the_default_is_learned_at_start(kafka_bootstrap: str, tmp_path: Path,
                                                                   post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool")
    await create_topics(settings)
    await set_max_message(settings, "status.raw", 100_000)
    served = await start_ingress(settings)
    try:
        await wait_ready(served.url)
        assert served.app[PUBLISHER].limits.largest[topics.name(settings, "status.raw")] == 100_000 - BATCH_HEADER
        code, answer = await post(f"{served.url}/notify/status", padded_status(120_000))
        assert code == 413 and "at most 99939" in answer["resultdesc"]
        assert (await post(f"{served.url}/notify/status", padded_status(90_000)))[0] == 200
        assert (await post(f"{served.url}/notify/fee", padded_fee(120_000)))[0] == 200  # fee.raw keeps the default
        assert len(await read_all(settings, "status.raw", expect=1, idle=1.0)) == 1
        assert len(await read_all(settings, "fee.raw", expect=1, idle=0)) == 1
    finally:
        await served.stop()
