"""Benchmark of ``voicecall dedup``: records/s against a passthrough loop, state bytes per key, restore time.

Starts its own Apache Kafka broker and, in one run:

1. preloads ``--records`` fee records (~1 KB CDRs) into ``fee.raw``, ~30 % of them duplicates;
2. alternating rounds drain that same input with
   - ``passthrough``: plain aiokafka consume → produce (the project's producer factory, no state, no transactions,
     offsets committed after each batch's sends) — :func:`passthrough`, importable by other benchmarks;
   - ``dedup``: the real dedup stage (:func:`voicecall.dedup.cli.stage` on the exactly-once shell), each round with
     a fresh group and prefix-free output so it starts from an empty state;
   throughput counts from the moment the contender owns its partitions until its committed offsets cover the input;
3. fills a state table with 1 M keys and reports bytes per key;
4. writes 1 M entries to a changelog partition and times the shell's restore of it.

    .venv/bin/python bench/dedup.py [--records 100000] [--rounds 3] [--partitions 3] [--restore-keys 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from voicecall import topics
from voicecall.dedup import cli as dedup_cli, core as dedup_core, metrics as dedup_metrics
from voicecall.dedup.config import DedupSettings
from voicecall.dedup.state import State
from voicecall.devenv.broker import start_broker
from voicecall.runtime import cloudevents, logging as vlog
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import make_admin, make_consumer, make_producer
from voicecall.runtime.stage import run_stage
from voicecall.runtime.stage.restore import restore


class Settings(DedupSettings, topics.TopicSettings):
    pass


def fee(i: int) -> dict[str, Any]:
    """A voice-callback CDR of ~900 B, like the platform's."""
    start = 1_795_000_000 + i // 10  # late 2026, so all fit in one 7-day window
    fmt = "%Y-%m-%d %H:%M:%S"
    stamp, answer = time.strftime(fmt, time.gmtime(start)), time.strftime(fmt, time.gmtime(start + 6))
    return {
        "direction": 0, "spId": "CaaS_Test_01", "appKey": "ka4k3Qx7Bt53ZytKo9X8C35Z5c6pvi",
        "icid": f"9c2012a5bcb2721681009cb6c245fdc3.{i}.1117803.14", "bindNum": "+8675528000002",
        "sessionId": f"1201_{i}_4294967295_20261123030424@callenabler245.huaweicaas.com",
        "callerNum": "+8675528000002", "calleeNum": f"+86138{i % 100000000:08d}", "fwdDisplayNum": "+8675528000002",
        "fwdDstNum": "+8613800000021", "callOutStartTime": stamp, "callOutAlertingTime": stamp,
        "callOutAnswerTime": answer, "callOutUnaswRsn": 0, "fwdStartTime": answer, "fwdAlertingTime": answer,
        "fwdAnswerTime": time.strftime(fmt, time.gmtime(start + 14)), "fwdUnaswRsn": 0,
        "callEndTime": time.strftime(fmt, time.gmtime(start + 200)), "ulFailReason": 0, "sipStatusCode": 0,
        "recordFlag": 0, "ttsPlayTimes": 0, "ttsTransDuration": 0, "serviceType": "002",
        "hostName": "callenabler245.huaweicaas.com", "userData": "customerId123",
    }


async def preload(settings: CommonSettings, topic: str, count: int, duplicate_share: float = 0.3) -> tuple[int, int]:
    """``count`` fee records, ``duplicate_share`` of them re-pushes of earlier ones; returns (unique, avg bytes)."""
    rng = random.Random(1)
    unique = int(count * (1 - duplicate_share))
    order = list(range(unique)) + [rng.randrange(unique) for _ in range(count - unique)]
    rng.shuffle(order)
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    size = 0
    try:
        pending = []
        for n in order:
            doc = fee(n)
            value = orjson.dumps(doc)
            size += len(value)
            headers = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/ingress")
            pending.append(await producer.send(topic, value=value, key=doc["sessionId"].encode(), headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return unique, size // max(count, 1)


async def wait_committed(settings: CommonSettings, group: str, topic: str, partitions: int, end: int,
                         timeout: float = 900) -> float:
    """The moment the group's committed offsets cover ``end`` records (polled every 50 ms with one client)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        while time.monotonic() < deadline:
            if sum([await consumer.committed(tp) or 0 for tp in tps]) >= end:
                return time.monotonic()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"group {group} did not finish")
    finally:
        await consumer.stop()


async def passthrough(settings: CommonSettings, in_topic: str, out_topic: str, group: str, partitions: int,
                      end: int, batch: int = 2000) -> float:
    """The baseline every stage compares with: consume → produce with plain clients, no state, no transactions;
    offsets committed after each batch's sends were acknowledged. Returns records/s from assignment to done."""
    consumer = make_consumer(settings, in_topic, group_id=group)
    producer = make_producer(settings)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        await consumer.seek_to_committed()
        started = time.monotonic()
        done = 0
        while done < end:
            got = await consumer.getmany(timeout_ms=100, max_records=batch)
            futures = [await producer.send(out_topic, value=r.value, key=r.key, headers=list(r.headers))
                       for records in got.values() for r in records]
            await asyncio.gather(*futures)
            if got:
                await consumer.commit()
                done += sum(len(v) for v in got.values())
        finished = await wait_committed(settings, group, in_topic, partitions, end)
        return end / (finished - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def dedup_round(settings: Settings, name: str, partitions: int, end: int) -> tuple[float, int]:
    stage = dedup_cli.stage(settings)
    stage.name = name  # a fresh group: starts at offset 0 with an empty state
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        started = time.monotonic()
        finished = await wait_committed(settings, f"{settings.topic_prefix}{name}", topics.name(settings, "fee.raw"),
                                        partitions, end)
        keys = sum(len(core.state) for core in list(dedup_metrics._LIVE))
        return end / (finished - started), keys
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


def state_bytes_per_key(keys: int) -> tuple[float, int]:
    rng = random.Random(2)
    state = State()
    for _ in range(keys):
        state.put(rng.getrandbits(64) | 1, rng.getrandbits(64), 1_795_000_000)
    return state.nbytes / len(state), state.capacity


async def restore_time(settings: Settings, keys: int) -> float:
    """Write ``keys`` entries to changelog partition 0, then time the shell's restore of that partition."""
    changelog = topics.name(settings, "dedup.changelog")
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    rng = random.Random(3)
    try:
        pending = []
        for _ in range(keys):
            key = (rng.getrandbits(64) | 1).to_bytes(8, "big")
            value = dedup_core.encode_entry(rng.getrandbits(64), 1_795_000_000 + rng.randrange(86400))
            pending.append(await producer.send(changelog, value=value, key=key, partition=0))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    core = dedup_cli.stage(settings).make_core(0)
    started = time.monotonic()
    await restore(settings, changelog, {0: core}, timeout=60)
    elapsed = time.monotonic() - started
    restored = core.core.state  # type: ignore[attr-defined]
    assert len(restored) == keys, (len(restored), keys)
    return elapsed


async def bench(args: argparse.Namespace) -> None:
    vlog.setup("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as state_dir:
        handle = start_broker("apache", state_dir=Path(state_dir))
        try:
            settings = Settings(kafka_bootstrap=handle.bootstrap, topic_prefix="bench.",
                                topic_partitions=args.partitions, topic_replication=1, topic_min_insync=1,
                                metrics_port=0, metrics_host="127.0.0.1", batch_records=2000, batch_time=0.1)
            await topics.create(settings)
            from aiokafka.admin import NewTopic

            admin = make_admin(settings)
            await admin.start()
            outs = [f"bench.out.{n}" for n in range(args.rounds)]
            await admin.create_topics([NewTopic(t, args.partitions, 1) for t in outs])
            await admin.close()
            raw = topics.name(settings, "fee.raw")
            print(f"broker {handle.bootstrap}; preloading {args.records} fee records ...", flush=True)
            unique, avg = await preload(settings, raw, args.records)
            print(f"{unique} unique, average record {avg} B, {args.partitions} partitions, batch 2000 / 100 ms",
                  flush=True)
            results: dict[str, list[float]] = {"passthrough": [], "dedup": []}
            for r in range(args.rounds):
                rate = await passthrough(settings, raw, outs[r], f"bench.pass{r}", args.partitions, args.records)
                results["passthrough"].append(rate)
                print(f"round {r}: passthrough {rate:9.0f} records/s", flush=True)
                # Each dedup round writes its own fee.unique copy; only the input and the group matter here.
                rate, keys = await dedup_round(settings, f"dedup{r}", args.partitions, args.records)
                assert keys == unique, (keys, unique)
                results["dedup"].append(rate)
                print(f"round {r}: dedup       {rate:9.0f} records/s  ({keys} keys in state)", flush=True)
            med = {k: statistics.median(v) for k, v in results.items()}
            # The first round also warms the broker up (JIT, page cache): the median keeps it from deciding.
            print(f"\nmedian records/s: passthrough {med['passthrough']:.0f}, dedup {med['dedup']:.0f}")
            print(f"dedup / passthrough = {med['dedup'] / med['passthrough']:.2f}  (goal >= 0.50, >= 10000/s)")
            per_key, capacity = state_bytes_per_key(args.state_keys)
            print(f"state: {per_key:.1f} B/key at {args.state_keys} keys (table of {capacity} slots; goal <= 64)")
            fresh = settings.model_copy(update={"topic_prefix": "benchrestore."})
            await topics.create(fresh)
            seconds = await restore_time(fresh, args.restore_keys)
            print(f"restore: {seconds:.2f} s for {args.restore_keys} keys = "
                  f"{seconds * 1_000_000 / args.restore_keys:.2f} s per 1 M keys (goal <= 10)")
        finally:
            handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--state-keys", type=int, default=1_000_000)
    parser.add_argument("--restore-keys", type=int, default=1_000_000)
    args = parser.parse_args()
    from voicecall.runtime.lifecycle import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(bench(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
