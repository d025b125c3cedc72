"""Benchmark of ``voicecall calls``: input records/s through the exactly-once shell against a passthrough loop on the
same mixed input, state bytes per call, and restore time.

Starts its own Apache Kafka broker and preloads the inputs of simulated calls (``voicecall simulate``'s generator:
the status pushes, the CDR in ``fee.unique``, the billing core's record, ``recording.stored`` for recorded calls),
in the order they happen (calls overlap: 50 start per second, each lasting seconds to an hour), into the five input
topics. Then, in one run and alternating rounds:

- ``passthrough``: a plain aiokafka consume → produce copy of all five topics into one (the project's producer
  factory, no transactions, no state, offsets committed per batch) — the same loop as the dedup benchmark's
  baseline, subscribed to the five inputs;
- ``calls``: the stage on the shell (:func:`voicecall.calls.cli.stage`), a fresh group and a fresh output topic per
  round (so it starts with an empty state), with its timers ticking.

A contender is done when its group's committed offsets cover every input; the time counts from the moment it was
ready (group joined, state restored).

State and restore: ``--state-calls`` call records (by default 1,000,000: the distinct records of the processed
calls, repeated with new sessionIds — same sizes, same mix) are written to a compacted calls topic and restored by
the stage (fence, restore: every record read, packed and its timers filed) in a child process that reports the time
from start to ready, its RSS growth and the bytes its state objects hold.

    .venv/bin/python bench/calls.py [--calls 20000] [--rounds 3] [--partitions 3] [--state-calls 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "calls"))

from calls_helpers import Raw, calls, core, feed, inputs_of, published

from voicecall import topics
from voicecall.calls import cli as calls_cli, metrics as calls_metrics
from voicecall.calls.config import CallsSettings
from voicecall.devenv.broker import start_broker
from voicecall.runtime import logging as vlog
from voicecall.runtime.kafka import make_admin, make_consumer, make_producer
from voicecall.runtime.lifecycle import tune_gc
from voicecall.runtime.stage import run_stage

INPUTS = ("status.raw", "fee.unique", "billing", "recording.stored", "recording.failed")


class Settings(CallsSettings, topics.TopicSettings):
    pass


async def produce_all(settings: Settings, records: list[tuple[str, bytes | None, bytes | None, list[Any]]]) -> None:
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for topic, key, value, headers in records:
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_committed(settings: Settings, group: str, ends: dict[TopicPartition, int], timeout: float = 900
                         ) -> float:
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([(await consumer.committed(tp) or 0) >= end for tp, end in ends.items()]):
                return time.monotonic()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"group {group} did not finish")
    finally:
        await consumer.stop()


async def passthrough(settings: Settings, group: str, out: str, ends: dict[TopicPartition, int],
                      batch: int = 2000) -> float:
    names = sorted({tp.topic for tp in ends})
    consumer = make_consumer(settings, *names, group_id=group)
    producer = make_producer(settings)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        await consumer.seek_to_committed()
        started = time.monotonic()
        done, total = 0, sum(ends.values())
        while done < total:
            got = await consumer.getmany(timeout_ms=100, max_records=batch)
            futures = [await producer.send(out, value=r.value, key=r.key, headers=list(r.headers))
                       for records in got.values() for r in records]
            await asyncio.gather(*futures)
            if got:
                await consumer.commit()
                done += sum(len(v) for v in got.values())
        return sum(ends.values()) / (await wait_committed(settings, group, ends) - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def calls_round(settings: Settings, name: str, out: str, ends: dict[TopicPartition, int]) -> tuple[float, int]:
    stage = calls_cli.stage(settings, dataclasses.replace(calls_cli.topic_names(settings), calls=out))
    stage.name = name  # a fresh group; with a fresh output topic, an empty state
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        started = time.monotonic()
        finished = await wait_committed(settings, f"{settings.topic_prefix}{name}", ends)
        held = sum(len(core) for core in list(calls_metrics._LIVE) if core.topics.calls == out)
        return sum(ends.values()) / (finished - started), held
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


def in_time_order(generated: list[Any]) -> list[Raw]:
    """Every input of the calls in the order the platform and the pipeline make them: the status pushes at their
    time, the CDR and its billing record when the call ends, a recording 20 s later — calls overlap as they do."""
    timed: list[tuple[float, int, Raw]] = []
    for call in generated:
        raws = inputs_of(call)
        moments = [event.at for event in call.status] + [call.end + 1, call.end + 1.5, call.end + 20]
        timed += [(moment, len(timed), raw) for moment, raw in zip(moments, raws, strict=False)]
    return [raw for _, _, raw in sorted(timed)]


def state_records(distinct: list[tuple[str, bytes]], count: int) -> list[tuple[bytes, bytes]]:
    """``count`` call records: the distinct ones, again and again under new sessionIds of the same form."""
    out = []
    for n in range(count):
        session_id, value = distinct[n % len(distinct)]
        stem, _, host = session_id.partition("@")
        kind, _, rest = stem.partition("_")
        new = f"{kind}_{n}_{rest.partition('_')[2]}@{host}"
        out.append((new.encode(), value.replace(session_id.encode(), new.encode())))
    return out


def restore_child(bootstrap: str, partitions: int) -> None:
    """In a fresh process: the stage on empty inputs (prefix ``benchr.``) restores its state from ``bench.state``
    — the shell's real start: fence, committed offsets, restore; prints JSON."""
    import gc

    from prometheus_client import REGISTRY

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async def run() -> dict[str, Any]:
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="benchr.", topic_partitions=partitions,
                            topic_replication=1, topic_min_insync=1, metrics_port=0)
        await topics.create(settings)
        stage = calls_cli.stage(settings, dataclasses.replace(calls_cli.topic_names(settings), calls="bench.state"))
        gc.collect()
        before = rss()
        stop, ready = asyncio.Event(), asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(run_stage(settings, stage, stop, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 600)
            restored = time.monotonic() - started
            cores = list(calls_metrics._LIVE)
            gc.collect()
            objects = sum(
                sys.getsizeof(c.calls) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in c.calls.items())
                + sum(sys.getsizeof(w.slots) + sum(sys.getsizeof(s) for s in w.slots.values())
                      for w in (c.expiry, c.cdr_timers))
                for c in cores)
            return {"records": REGISTRY.get_sample_value("voicecall_stage_restored_records_total",
                                                         {"stage": "calls"}),
                    "calls": sum(len(c) for c in cores), "restore_s": restored,
                    "rss_bytes": rss() - before, "object_bytes": objects,
                    "value_bytes": sum(c.nbytes for c in cores)}
        finally:
            stop.set()
            await asyncio.wait_for(task, 120)

    vlog.setup("WARNING", "console")
    print(json.dumps(asyncio.run(run())), flush=True)


async def bench(args: argparse.Namespace) -> None:
    vlog.setup("WARNING", "console")
    tune_gc()
    load = os.getloadavg()
    print(f"load average at start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (2 cores: other engineers' work)")
    print(f"generating {args.calls} calls ...", flush=True)
    generated = calls(args.calls, seed=17, start=datetime.now(UTC) - timedelta(hours=3), rate=50.0)
    raws = in_time_order(generated)
    per_topic = {suffix: sum(1 for raw in raws if raw[0] == suffix) for suffix in INPUTS}
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as state:
        handle = start_broker("apache", state_dir=Path(state))
        try:
            settings = Settings(kafka_bootstrap=handle.bootstrap, topic_prefix="bench.",
                                topic_partitions=args.partitions, topic_replication=1, topic_min_insync=1,
                                metrics_port=0, metrics_host="127.0.0.1", batch_records=2000, batch_time=0.1)
            await topics.create(settings)
            outs = [f"bench.out.{n}" for n in range(2 * args.rounds)] + ["bench.state"]
            admin = make_admin(settings)
            await admin.start()
            await admin.create_topics([NewTopic(t, args.partitions, 1, topic_configs={"cleanup.policy": "compact"}
                                                if t == "bench.state" else {}) for t in outs])
            await admin.close()
            await produce_all(settings, [(topics.name(settings, s), k, v, h) for s, k, v, h in raws])
            size = sum(len(raw[2]) for raw in raws) // len(raws)
            print(f"broker {handle.bootstrap}; {len(raws)} input records (avg {size} B): "
                  + ", ".join(f"{s} {n}" for s, n in per_topic.items()) + f"; {args.partitions} partitions",
                  flush=True)
            consumer = make_consumer(settings, group_id=None)
            await consumer.start()
            tps = [TopicPartition(topics.name(settings, s), p) for s in INPUTS for p in range(args.partitions)]
            ends = await consumer.end_offsets(tps)
            await consumer.stop()
            rates: dict[str, list[float]] = {"passthrough": [], "calls": []}
            cpus: dict[str, list[float]] = {"passthrough": [], "calls": []}
            records = sum(ends.values())
            for r in range(args.rounds):
                cpu = time.process_time()
                rates["passthrough"].append(await passthrough(settings, f"bench.raw{r}", outs[2 * r], ends))
                cpus["passthrough"].append((time.process_time() - cpu) / records * 1e6)
                cpu = time.process_time()
                rate, held = await calls_round(settings, f"calls{r}", outs[2 * r + 1], ends)
                cpus["calls"].append((time.process_time() - cpu) / records * 1e6)
                rates["calls"].append(rate)
                ratio = rates["calls"][-1] / rates["passthrough"][-1]
                print(f"round {r}: passthrough {rates['passthrough'][-1]:8.0f} ({cpus['passthrough'][-1]:5.1f} µs "
                      f"CPU)  calls {rate:8.0f} ({cpus['calls'][-1]:5.1f} µs CPU) input records/s ({held} calls "
                      f"held)  ratio {ratio:.2f}  load {os.getloadavg()[0]:.1f}", flush=True)
            ratios = [c / p for c, p in zip(rates["calls"], rates["passthrough"], strict=True)]
            med = {k: statistics.median(v) for k, v in rates.items()}
            status_share = per_topic["status.raw"] / len(raws)
            print(f"\nmedian: passthrough {med['passthrough']:.0f}, calls {med['calls']:.0f} input records/s "
                  f"(status.raw {status_share:.2f} of them: {med['calls'] * status_share:.0f}/s); ratio of medians "
                  f"{med['calls'] / med['passthrough']:.2f}, median per-round ratio {statistics.median(ratios):.2f}; "
                  f"rounds meeting the goal (>= 0.5): {sum(x >= 0.5 for x in ratios)} of {len(ratios)}; CPU per "
                  f"input record in this process (median): passthrough {statistics.median(cpus['passthrough']):.1f} "
                  f"µs, calls {statistics.median(cpus['calls']):.1f} µs")
            if args.state_calls:
                target = core()
                feed(target, raws)
                distinct = sorted((sid, published(target, sid)) for sid in target.snapshot())
                print(f"\nstate: {args.state_calls} call records (from {len(distinct)} distinct, avg "
                      f"{sum(len(v) for _, v in distinct) // len(distinct)} B) ...", flush=True)
                records = state_records(distinct, args.state_calls)
                await produce_all(settings, [("bench.state", k, v, []) for k, v in records])
                del records
                child = await asyncio.to_thread(
                    subprocess.run, [sys.executable, __file__, "--restore-child", handle.bootstrap,
                                     str(args.partitions)], capture_output=True, text=True)
                if child.returncode != 0:
                    raise RuntimeError(f"the restore child failed:\n{child.stderr[-3000:]}")
                result = json.loads(child.stdout.strip().splitlines()[-1])
                n = result["calls"]
                print(f"restored {result['records']:.0f} records, {n} calls: start to ready {result['restore_s']:.1f} s"
                      f" ({result['restore_s'] / n * 1e6:.1f} s per 1M calls); state "
                      f"{result['object_bytes'] / n:.0f} B/call in its objects (values {result['value_bytes'] / n:.0f}"
                      f" B), RSS growth {result['rss_bytes'] / n:.0f} B/call (goal <= 2048)", flush=True)
        finally:
            handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--state-calls", type=int, default=1_000_000)
    parser.add_argument("--restore-child", nargs=2, metavar=("BOOTSTRAP", "PARTITIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_child:
        restore_child(args.restore_child[0], int(args.restore_child[1]))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
