"""Benchmark of ``voicecall billing``: records/s through the exactly-once shell, against passthrough baselines.

Starts its own Apache Kafka broker, preloads fee records (~1 KB CDRs, the mix of the reference's examples) into
``fee.unique``, then, in one run and alternating rounds, drains the same input with:

- ``passthrough``: the dedup benchmark's baseline, imported from ``bench/dedup.py``: a plain aiokafka consume →
  produce copy (the project's producer factory, no transactions, offsets committed per batch);
- ``shell-passthrough``: the exactly-once shell (:mod:`voicecall.runtime.stage`) with a core that copies the
  record unchanged — what the shell alone costs;
- ``billing``: the shell with the billing core (parse, rules, render, sorted-keys orjson).

Each contender has its own consumer group; a run ends when the group's committed offsets cover the input.
Throughput counts from the moment the contender was ready (assignment done), so group joins do not count.

    .venv/bin/python bench/billing.py [--records 100000] [--rounds 2] [--partitions 3] [--default-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

import dedup as dedup_bench  # bench/dedup.py: the shared passthrough baseline
from voicecall import topics
from voicecall.billing import cli as billing_cli
from voicecall.billing.config import BillingSettings
from voicecall.devenv.broker import start_broker
from voicecall.runtime import cloudevents, logging as vlog
from voicecall.runtime.kafka import make_admin, make_producer
from voicecall.runtime.stage import Record, Stage, run_stage


class Settings(BillingSettings, topics.TopicSettings):
    pass


def fee(i: int, rng: random.Random) -> dict[str, Any]:
    """A callback (2 legs) or notification CDR, ~1 KB like the real ones; a few unanswered legs."""
    start = 1_548_300_000 + i
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))
    answer = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 6))
    fwd_answer = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 14))
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 20 + rng.randrange(0, 900)))
    record: dict[str, Any] = {
        "direction": 0, "spId": "CaaS_Test_01", "appKey": "ka4k3Qx7Bt53ZytKo9X8C35Z5c6pvi",
        "icid": f"9c2012a5bcb2721681009cb6c245fdc3.{i}.1117803.14", "bindNum": "+8675528000002",
        "sessionId": f"1201_{i}_4294967295_{stamp.replace('-', '').replace(' ', '').replace(':', '')}"
                     "@callenabler245.huaweicaas.com",
        "callerNum": "+8675528000002", "calleeNum": f"+86138{i % 100000000:08d}",
        "callOutStartTime": stamp, "callOutAlertingTime": stamp, "callOutAnswerTime": answer,
        "callOutUnaswRsn": 0, "callEndTime": end, "ulFailReason": 0, "sipStatusCode": 0, "recordFlag": 0,
        "ttsPlayTimes": 0, "ttsTransDuration": 0, "hostName": "callenabler245.huaweicaas.com",
        "userData": "customerId123",
    }
    if i % 3:
        record.update({"serviceType": "002", "fwdDisplayNum": "+8675528000002", "fwdDstNum": "+8613800000021",
                       "fwdStartTime": answer, "fwdAlertingTime": answer, "fwdUnaswRsn": 0,
                       "fwdAnswerTime": fwd_answer if i % 11 else ""})
    else:
        record["serviceType"] = "001"
    return record


async def preload(settings: Settings, count: int) -> int:
    rng = random.Random(1)
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    size = 0
    try:
        topic = topics.name(settings, "fee.unique")
        pending = []
        for i in range(count):
            value = orjson.dumps(fee(i, rng))
            size += len(value)
            sid = value[value.index(b'"sessionId":"') + 13:].split(b'"', 1)[0]
            headers = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/dedup")
            pending.append(await producer.send(topic, value=value, key=sid, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return size // max(count, 1)


async def raw_passthrough(settings: Settings, group: str, out_topic: str, partitions: int, end: int
                          ) -> tuple[float, float]:
    """The dedup benchmark's baseline (:func:`bench.dedup.passthrough`), plus this process's CPU per record."""
    cpu = time.process_time()
    rate = await dedup_bench.passthrough(settings, topics.name(settings, "fee.unique"), out_topic, group, partitions,
                                         end)
    return rate, (time.process_time() - cpu) / end * 1e6


class PassthroughCore:
    def __init__(self, out_topic: str) -> None:
        self.out = out_topic

    def process(self, record: ConsumerRecord[Any, Any]) -> list[Record]:
        return [Record(self.out, record.key, record.value, list(record.headers))]

    def restore(self, record: ConsumerRecord[Any, Any]) -> None:
        return None


async def shell(settings: Settings, stage: Stage, partitions: int, end: int) -> tuple[float, float]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        started, cpu = time.monotonic(), time.process_time()
        finished = await dedup_bench.wait_committed(settings, f"{settings.topic_prefix}{stage.name}",
                                                    topics.name(settings, "fee.unique"), partitions, end)
        return end / (finished - started), (time.process_time() - cpu) / end * 1e6
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


async def bench(args: argparse.Namespace) -> None:
    vlog.setup("WARNING", "console")
    if not args.default_gc:
        billing_cli.tune_gc()  # as `voicecall billing` does; applies to every contender of this process alike
    print(f"gc thresholds {gc.get_threshold()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as state:
        handle = start_broker("apache", state_dir=Path(state))
        try:
            settings = Settings(kafka_bootstrap=handle.bootstrap, topic_prefix="bench.",
                                topic_partitions=args.partitions,
                                topic_replication=1, topic_min_insync=1, metrics_port=0, metrics_host="127.0.0.1",
                                batch_records=2000, batch_time=0.1)
            await topics.create(settings)
            from aiokafka.admin import NewTopic

            admin = make_admin(settings)
            await admin.start()
            outs = [f"bench.out.{n}" for n in range(2 * args.rounds)]
            await admin.create_topics([NewTopic(t, args.partitions, 1) for t in outs])
            await admin.close()
            print(f"broker {handle.bootstrap}; preloading {args.records} fee records ...", flush=True)
            avg = await preload(settings, args.records)
            print(f"average record {avg} B; {args.partitions} partitions; batch 2000 / 100 ms", flush=True)
            names = ("passthrough", "shell-passthrough", "billing")
            rates: dict[str, list[float]] = {n: [] for n in names}
            cpus: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.rounds):
                out = outs[2 * r + 1]
                billing = billing_cli.stage(settings)
                billing.name = f"billing{r}"
                contenders = {
                    "passthrough": lambda r=r: raw_passthrough(settings, f"bench.raw{r}", outs[2 * r],
                                                               args.partitions, args.records),
                    "shell-passthrough": lambda r=r, out=out: shell(
                        settings, Stage(name=f"shellpass{r}", input_topic=topics.name(settings, "fee.unique"),
                                        deadletter_topic=topics.name(settings, "deadletter"),
                                        make_core=lambda _p: PassthroughCore(out)), args.partitions, args.records),
                    "billing": lambda billing=billing: shell(settings, billing, args.partitions, args.records),
                }
                for name in names:
                    rate, cpu = await contenders[name]()
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    print(f"round {r}: {name:<18} {rate:9.0f} records/s  {cpu:6.1f} µs CPU/record", flush=True)
                print(f"round {r}: billing / passthrough = {rates['billing'][-1] / rates['passthrough'][-1]:.2f}",
                      flush=True)
            med = {k: statistics.median(v) for k, v in rates.items()}
            cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
            ratios = [b / p for b, p in zip(rates["billing"], rates["passthrough"], strict=True)]
            print("\nmedian over rounds:")
            for k in names:
                print(f"  {k:<18} {med[k]:9.0f} records/s  {cpu_med[k]:6.1f} µs CPU/record (this process)")
            print(f"billing / passthrough       = {med['billing'] / med['passthrough']:.2f} "
                  f"(median of per-round ratios {statistics.median(ratios):.2f}; goal >= 0.60)")
            print(f"billing / shell-passthrough = {med['billing'] / med['shell-passthrough']:.2f}")
            print(f"shell-passthrough / passthrough = {med['shell-passthrough'] / med['passthrough']:.2f}")
            print(f"CPU per record: billing core adds {cpu_med['billing'] - cpu_med['shell-passthrough']:.1f} µs "
                  f"over the shell; passthrough-equivalent CPU ratio = "
                  f"{cpu_med['passthrough'] / cpu_med['billing']:.2f}")
        finally:
            handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--default-gc", action="store_true", help="keep CPython's default gc thresholds")
    args = parser.parse_args()
    from voicecall.runtime.lifecycle import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(bench(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
