"""The spool never blocks behind one entry (real broker): records Kafka refuses for good and entries that cannot be
read are quarantined with a deadletter record, and every other spooled record reaches Kafka exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from ingress_helpers import fee_push, ingress_settings, running_ingress, start_ingress, status_push
from test_ingress_oversized import padded_status, set_max_message

from kafka_helpers import create_topics, read_all
from voicecall import topics
from voicecall.ingress.app import PUBLISHER
from voicecall.ingress.drain import Drainer
from voicecall.ingress.parse import Parser
from voicecall.ingress.publisher import Publisher
from voicecall.ingress.quarantine import NAME
from voicecall.ingress.spool import Spool, encode_entry, frame, iter_entries
from voicecall.runtime.record import Record


def records_of(parser: Parser, push: dict[str, Any], tag: str) -> list[Record]:
    outcome = parser.parse(orjson.dumps(push), received="2026-12-01T00:00:00.000Z", push_id=tag,
                           origin={"path": "/notify", "client": "127.0.0.1"})
    assert outcome.status == 200
    return outcome.records


async def until_drained(url: str, quarantined: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    ready: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{url}/readyz") as response:
                ready = await response.json()
            spool = ready.get("spool", {})
            if spool.get("entries") == 0 and spool.get("quarantined") == quarantined and spool.get("drain") == "idle":
                return ready
            await asyncio.sleep(0.2)
    raise AssertionError(f"spool not drained: {ready}")


async def test_poison_entries_written_into_the_spool_are_quarantined_and_the_rest_delivered_once(
        kafka_bootstrap: str, tmp_path: Path, post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool")
    await create_topics(settings)
    parser = Parser(settings)
    good = [records_of(parser, status_push(f"good-{i}"), f"g{i}") for i in range(4)]
    template = good[0][0]
    too_large = Record(template.topic, b"big", b'{"sessionId":"big","x":"' + b"x" * 1_500_000 + b'"}', template.headers)
    # Kafka itself refuses this one (a compacted topic takes no record without a key): only sending it tells.
    refused = Record(topics.name(settings, "dedup.changelog"), None, b"{}", [])
    fees = records_of(parser, fee_push(3, tag="mixed-"), "f")
    fees[1] = Record(refused.topic, None, b'{"sessionId":"mixed-1"}', [])  # one bad record inside a push of three
    unreadable = frame(b'{"t": 1, "r": [[1, 2, 3, 4]]}')  # framed and CRC-correct, but not records
    entries = [encode_entry(good[0], 1.0), encode_entry([too_large], 2.0), encode_entry(good[1], 3.0),
               encode_entry([refused], 4.0), encode_entry(good[2], 5.0), unreadable, encode_entry(fees, 6.0),
               encode_entry(good[3], 7.0)]
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / f"{1:020d}.seg").write_bytes(b"".join(entries))

    served = await start_ingress(settings)
    try:
        ready = await until_drained(served.url, quarantined=4)
        assert ready["ready"] is True and "drain_error" not in ready["spool"], ready
        assert (await post(f"{served.url}/notify/status", status_push("after")))[0] == 200
        async with aiohttp.ClientSession() as session, session.get(f"{served.url}/metrics") as response:
            exposition = await response.text()
        assert "voicecall_ingress_spool_quarantine_records 4.0" in exposition
        assert 'voicecall_ingress_spool_quarantined_records_total{reason="undeliverable"} 3.0' in exposition
        quarantine = tmp_path / "spool" / "quarantine" / NAME
        kept_aside = quarantine.read_bytes()
        quarantine.unlink()  # a human took the file away: nothing waits any more
        assert (await until_drained(served.url, quarantined=0))["spool"]["quarantined"] == 0
        quarantine.write_bytes(kept_aside)
    finally:
        await served.stop()

    statuses = await read_all(settings, "status.raw", expect=5, idle=3.0)
    assert Counter(r.key.decode() for r in statuses) == Counter(
        ["good-0", "good-1", "good-2", "good-3", "after"])  # each exactly once; nothing of the poison
    delivered_fees = await read_all(settings, "fee.raw", expect=2, idle=1.0)
    assert sorted(r.key.decode() for r in delivered_fees) == [fees[0].key.decode(), fees[2].key.decode()]
    dead = [orjson.loads(r.value) for r in await read_all(settings, "deadletter", expect=4, idle=1.0)]
    assert sorted(d["reason"] for d in dead) == ["too-large", "undeliverable", "undeliverable", "undeliverable"]
    assert all(d["stage"] == "ingress" and d["quarantine"] == NAME and d["origin"]["spool"] ==
               f"{1:020d}.seg" for d in dead), dead
    assert {d["origin"].get("topic") for d in dead} == {template.topic, refused.topic, None}
    quarantined = list(iter_entries((tmp_path / "spool" / "quarantine" / NAME).read_bytes(), 0))
    assert len(quarantined) == 4 and all(e is not None for e in quarantined)
    kept = [e.records[0] if e.records else e.unreadable for e in quarantined if e is not None]
    expected = [too_large, refused, unreadable[8:], fees[1]]  # each as it was, for a human to look at
    assert sorted(map(repr, kept)) == sorted(map(repr, expected))
    assert not list((tmp_path / "spool").glob("*.seg"))


async def test_a_limit_lowered_after_start_quarantines_the_push_kafka_refuses(
        kafka_bootstrap: str, tmp_path: Path, post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_ack_deadline=5.0)
    async with running_ingress(settings) as served:
        limits = served.app[PUBLISHER].limits
        status_topic = topics.name(settings, "status.raw")
        assert limits.largest[status_topic] > 1_000_000
        await set_max_message(settings, "status.raw", 50_000)
        # Learned before the change: answered 200 from the spool when Kafka refuses it, then quarantined.
        answers = await asyncio.gather(post(f"{served.url}/notify/status", padded_status(100_000)),
                                       post(f"{served.url}/notify/status", status_push("small-0")))
        assert [code for code, _ in answers] == [200, 200]
        assert (await post(f"{served.url}/notify/status", status_push("small-1")))[0] == 200
        await until_drained(served.url, quarantined=1)
        assert limits.largest[status_topic] == 50_000 - 61  # learned again on the refusal
        code, answer = await post(f"{served.url}/notify/status", padded_status(100_000))
        assert code == 413 and "at most 49939" in answer["resultdesc"]
    statuses = await read_all(settings, "status.raw", expect=2, idle=2.0)
    assert Counter(r.key.decode() for r in statuses) == Counter(["small-0", "small-1"])
    dead = [orjson.loads(r.value) for r in await read_all(settings, "deadletter", expect=2, idle=1.0)]
    assert sorted(d["reason"] for d in dead) == ["too-large", "too-large"]  # the quarantined one, the 413

    # The runbook: the cause fixed (the limit raised again), the file moved in as the first segment, a restart.
    await set_max_message(settings, "status.raw", 1_048_588)
    spool = tmp_path / "spool"
    (spool / "quarantine" / NAME).rename(spool / f"{0:020d}.seg")
    served = await start_ingress(settings)
    try:
        ready = await until_drained(served.url, quarantined=0)
        assert ready["ready"] is True
    finally:
        await served.stop()
    statuses = await read_all(settings, "status.raw", expect=3, idle=2.0)
    assert Counter(r.key.decode() for r in statuses) == Counter(["small-0", "small-1", "p-1"])


async def test_readiness_says_not_ready_while_the_drain_is_stuck(tmp_path: Path) -> None:
    settings = ingress_settings("127.0.0.1:1", tmp_path / "spool")
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 16)
    spool.open()
    publisher = Publisher(settings, spool)
    drainer = Drainer(spool, publisher)
    try:
        assert publisher.ready()[0] is True  # Kafka away, the spool usable: pushes are durable
        for state, ready in (("waiting-for-kafka", True), ("stuck", False), ("draining", True)):
            drainer.state = state
            ok, detail = drainer.ready(*publisher.ready())
            assert (ok, detail["spool"]["drain"]) == (ready, state)
    finally:
        await spool.close()


async def test_a_topic_limit_below_the_batch_size_renews_the_producer_and_loses_nothing(
        kafka_bootstrap: str, tmp_path: Path, post: Callable[..., Any]) -> None:
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_ack_deadline=5.0)
    async with running_ingress(settings) as served:
        publisher = served.app[PUBLISHER]
        first = publisher.producer
        await set_max_message(settings, "status.raw", 50_000)

        def push(tag: str, i: int) -> bytes:  # ~5 KB each: concurrent ones fill batches far over 50 KB
            return orjson.dumps({"eventType": "answer", "statusInfo": {"sessionId": f"{tag}-{i}", "pad": "x" * 5000}})

        burst = await asyncio.gather(*(post(f"{served.url}/notify/status", push("burst", i)) for i in range(200)))
        assert [code for code, _ in burst] == [200] * 200
        await until_drained(served.url, quarantined=0, timeout=120)
        assert publisher.producer is not first and publisher.limits.batch_size() <= 50_000 - 61
        after = await asyncio.gather(*(post(f"{served.url}/notify/status", push("after", i)) for i in range(50)))
        assert [code for code, _ in after] == [200] * 50
        await until_drained(served.url, quarantined=0)
    statuses = await read_all(settings, "status.raw", expect=250, idle=2.0)
    assert Counter(r.key.decode() for r in statuses) == Counter(
        [f"burst-{i}" for i in range(200)] + [f"after-{i}" for i in range(50)])  # each exactly once
