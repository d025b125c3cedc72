"""Benchmark of ``voicecall replay copy``: records/s and peak memory, against a plain aiokafka copy.

Starts its own Apache Kafka broker, preloads ~900-byte fee records into ``fee.unique`` (one per millisecond of
record time), then, in alternating rounds, copies the whole window into another topic with:

- ``baseline``: the simplest aiokafka copy — one consumer assigned every partition, ``getmany`` batches, each
  record sent with the project's producer (same acks=all/idempotence), acknowledgements awaited per batch;
- ``replay``: :func:`voicecall.replay.copy.copy` — window and key checks on every record, partition by partition,
  replay headers added, progress accounting.

Peak RSS is measured for the ``voicecall replay copy`` command in a subprocess, once, on the whole window.

    .venv/bin/python bench/replay.py [--records 100000] [--rounds 2] [--partitions 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from voicecall import topics
from voicecall.devenv.broker import start_broker
from voicecall.replay import copy as replay_copy, names, window
from voicecall.runtime import cloudevents, config, logging as vlog, times
from voicecall.runtime.kafka import make_consumer, make_producer

# Recent record times: older ones would fall out of the topics' retention while the benchmark runs.
BASE_MS = (int(time.time()) - 7200) * 1000


def fee(i: int) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE_MS // 1000 + i))
    return orjson.dumps({
        "direction": 1, "spId": "CaaS_Test_01", "appKey": "ka4k3Qx7Bt53ZytKo9X8C35Z5c6pvi",
        "icid": f"9c2012a5bcb2721681009cb6c245fdc3.{i}.1117803.14", "bindNum": "+8675528000002",
        "sessionId": f"1201_{i}_4294967295@callenabler245.huaweicaas.com", "callerNum": "+8675528000002",
        "calleeNum": f"+86138{i % 100000000:08d}", "fwdDisplayNum": "+8675528000002",
        "fwdDstNum": f"+86139{i % 100000000:08d}", "callInTime": stamp, "fwdStartTime": stamp,
        "fwdAlertingTime": stamp, "fwdAnswerTime": stamp, "callEndTime": stamp, "fwdUnaswRsn": 0, "failTime": "",
        "ulFailReason": 0, "sipStatusCode": 0, "callOutStartTime": stamp, "callOutAlertingTime": stamp,
        "callOutAnswerTime": stamp, "callOutUnaswRsn": 0, "recordFlag": 0, "serviceType": "002",
        "hostName": "callenabler245.huaweicaas.com", "userData": "x" * 200,
    })


async def preload(settings: topics.TopicSettings, count: int) -> None:
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            value = fee(i)
            key = orjson.loads(value)["sessionId"].encode()
            pending.append(await producer.send(topics.name(settings, "fee.unique"), value, key=key,
                                               timestamp_ms=BASE_MS + i,
                                               headers=cloudevents.headers(cloudevents.TYPE_FEE, "/bench")))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def baseline(settings: topics.TopicSettings, target: str, batch: int) -> int:
    source = topics.name(settings, "fee.unique")
    consumer = make_consumer(settings, group_id=None)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(source, p) for p in (await names.partitions(settings))[source]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        copied = 0
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            acks = [await producer.send(target, r.value, key=r.key, headers=list(r.headers))
                    for records in fetched.values() for r in records]
            await asyncio.gather(*acks)
            copied += len(acks)
        return copied
    finally:
        await consumer.stop()
        await producer.stop()


async def project(settings: topics.TopicSettings, target: str, count: int, batch: int) -> int:
    summary = await replay_copy.copy(settings, "fee.unique", target, window.Window(BASE_MS, BASE_MS + count),
                                     batch=batch, err=io.StringIO())
    return summary.copied


def command_peak_rss(settings: topics.TopicSettings, count: int) -> tuple[float, int]:
    """Run `voicecall replay copy` on the whole window; (seconds, peak RSS KiB) sampled every 20 ms."""
    env = dict(os.environ) | {"VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                              "VOICECALL_TOPIC_PREFIX": settings.topic_prefix}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique",
                             "--to-topic", "status.raw", "--from", times.iso_ms(BASE_MS),
                             "--to", times.iso_ms(BASE_MS + count)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]))
        except FileNotFoundError:
            break
        time.sleep(0.02)
    if proc.wait() != 0:
        raise SystemExit("voicecall replay copy failed")
    return time.monotonic() - started, peak


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    settings = config.load(topics.TopicSettings, kafka_bootstrap=bootstrap, topic_prefix="bench.",
                           topic_partitions=args.partitions, topic_replication=1)
    await topics.create(settings)
    started = time.monotonic()
    await preload(settings, args.records)
    window_mib = args.records * len(fee(0)) / 2**20
    print(f"preloaded {args.records} records ({window_mib:.0f} MiB) in {time.monotonic() - started:.1f} s")
    rates: dict[str, list[float]] = {"baseline": [], "replay": []}
    targets = {"baseline": "billing", "replay": "fee.raw"}
    for round_ in range(args.rounds):
        for name in ("baseline", "replay") if round_ % 2 == 0 else ("replay", "baseline"):
            target = topics.name(settings, targets[name])
            started = time.monotonic()
            copied = (await baseline(settings, target, args.batch) if name == "baseline"
                      else await project(settings, target, args.records, args.batch))
            seconds = time.monotonic() - started
            assert copied == args.records, (name, copied)
            rates[name].append(copied / seconds)
            print(f"round {round_ + 1} {name:>8}: {copied} records in {seconds:.2f} s = {copied / seconds:,.0f}/s")
    base, ours = statistics.median(rates["baseline"]), statistics.median(rates["replay"])
    print(f"median: baseline {base:,.0f}/s, replay copy {ours:,.0f}/s, ratio replay/baseline {ours / base:.2f}")
    seconds, peak = command_peak_rss(settings, args.records)
    print(f"`voicecall replay copy` of the whole {window_mib:.0f} MiB window: {seconds:.1f} s wall "
          f"(process start included), peak RSS {peak / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    vlog.setup("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as state:
        broker = start_broker("apache", state_dir=Path(state))
        try:
            asyncio.run(run(args, broker.bootstrap))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
