"""``voicecall billing`` against the real broker: fee.unique → billing exactly once, and a SIGKILL crash test."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import billing_samples as samples
import orjson
from aiokafka.structs import ConsumerRecord
from billing_kafka import BillingSettings, end_offsets, env_for, produce, read_all
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from voicecall.billing import cli
from voicecall.billing.core import BillingCore
from voicecall.devenv.ports import free_port
from voicecall.runtime import cloudevents
from voicecall.runtime.deadletter import Reason

KILLS = 5  # as the dedup crash test: at least five SIGKILLs at random moments
FEE_HEADERS = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/dedup", "fixed-id", "2019-01-24T04:01:07.000Z")


def fee_record(fee: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return str(fee.get("sessionId", "none")).encode(), orjson.dumps(fee), FEE_HEADERS


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fee_unique_to_billing_in_process(settings: BillingSettings) -> None:
    good = [samples.F2, samples.F5, samples.notification()]
    bad = samples.notification(sessionId="bad-1", callEndTime="2019-01-24 03:00:00")
    before_billed = counter("voicecall_billing_records_total", service_type="002")
    before_minutes = counter("voicecall_billing_minutes_total", service_type="002")
    before_dead = counter("voicecall_billing_deadletters_total", reason=Reason.END_BEFORE_ANSWER)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(cli.serve(settings, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        await produce(settings, "fee.unique", [fee_record(f) for f in [*good, bad]])
        billed = await read_all(settings, "billing", expect=3, idle=0.5)
        dead = await read_all(settings, "deadletter", expect=1, idle=0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    by_key = {r.key: orjson.loads(r.value) for r in billed}
    assert len(billed) == 3 and set(by_key) == {f["sessionId"].encode() for f in good}
    f2 = by_key[samples.F2["sessionId"].encode()]
    assert [(leg["seconds"], leg["billedMinutes"]) for leg in f2["legs"]] == [(195, 4), (181, 4)]
    assert f2["amount"] == 144 and f2["currency"] == "CNY"
    f5 = by_key[samples.F5["sessionId"].encode()]
    assert [(leg["seconds"], leg["billedMinutes"]) for leg in f5["legs"]] == [(0, 0), (11, 1)]
    for r in billed:
        assert cloudevents.header(r.headers, "ce_type") == "voicecall.billing.computed"
    assert len(dead) == 1
    dead_value = orjson.loads(dead[0].value)
    assert dead_value["reason"] == Reason.END_BEFORE_ANSWER and dead_value["payload"] == bad
    assert dead_value["origin"]["topic"] == f"{settings.topic_prefix}fee.unique"
    # Metrics: F2 and F5 are callbacks (8 + 1 minutes), one end-before-answer deadletter.
    assert counter("voicecall_billing_records_total", service_type="002") - before_billed == 2
    assert counter("voicecall_billing_minutes_total", service_type="002") - before_minutes == 9
    assert counter("voicecall_billing_deadletters_total", reason=Reason.END_BEFORE_ANSWER) - before_dead == 1


def crash_feed(count: int) -> list[dict[str, Any]]:
    """Callback and notification records with varied durations; every 50th is bad data."""
    rng = random.Random(6)
    fees = []
    for i in range(count):
        if i % 50 == 49:
            fees.append(samples.notification(sessionId=f"crash-{i}", callOutAnswerTime="garbage"))
        elif i % 2:
            end = 1000 + rng.randrange(0, 3000)
            fees.append({**samples.F5, "sessionId": f"crash-{i}",
                         "fwdAnswerTime": f"2019-01-24 03:{rng.randrange(0, 10):02d}:{rng.randrange(0, 60):02d}",
                         "callEndTime": f"2019-01-24 {3 + end // 3600:02d}:{end % 3600 // 60:02d}:{end % 60:02d}"})
        else:
            fees.append(samples.notification(sessionId=f"crash-{i}"))
    return fees


async def test_sigkill_repeatedly_while_feeding_loses_and_doubles_nothing(settings: BillingSettings,
                                                                          tmp_path: Path) -> None:
    seed = int(os.environ.get("BILLING_CRASH_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"crash test seed {seed} (BILLING_CRASH_SEED={seed} repeats the kill moments)")
    rng = random.Random(seed)
    fees = crash_feed(6000)  # ~48 s of feed: five starts and kills fit in it on a loaded 2-core machine
    good = [f for f in fees if f.get("callOutAnswerTime") != "garbage"]
    env = env_for(settings)
    command = [sys.executable, "-m", "voicecall", "billing"]

    async def feed() -> None:
        for start in range(0, len(fees), 100):
            await produce(settings, "fee.unique", [fee_record(f) for f in fees[start:start + 100]])
            await asyncio.sleep(0.8)

    feeder = asyncio.create_task(feed())
    kills = 0
    process: asyncio.subprocess.Process | None = None
    log = tmp_path / "billing.log"
    try:
        for attempt in range(KILLS):
            with (tmp_path / f"killed-{attempt}.log").open("wb") as killed_log:
                process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                               stderr=killed_log)
            if attempt % 3 == 2:  # while it starts, joins the group or initialises its producers
                await asyncio.sleep(rng.uniform(0.3, 3.0))
            else:  # once this instance has committed something, at a random moment of its work
                before = await end_offsets(settings, "billing")
                while await end_offsets(settings, "billing") == before:
                    assert process.returncode is None, (tmp_path / f"killed-{attempt}.log").read_text()[-3000:]
                    await asyncio.sleep(0.1)
                await asyncio.sleep(rng.uniform(0.0, 1.0))
            assert process.returncode is None, (tmp_path / f"killed-{attempt}.log").read_text()[-3000:]
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10)
            kills += 1
        assert not feeder.done(), "feed the input while the instances are killed: make the feed longer"
        await feeder
        with log.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                           stderr=log_file)
        billed = await read_all(settings, "billing", expect=len(good), idle=2.0, timeout=120)
        dead = await read_all(settings, "deadletter", expect=len(fees) - len(good), idle=0.5, timeout=30)
        metrics_text, ready_status = await scrape(log)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0, log.read_text()[-2000:]
    finally:
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
    assert kills == KILLS
    counts = collections.Counter(r.key for r in billed)
    doubled = [k for k, n in counts.items() if n > 1]
    missing = {f["sessionId"].encode() for f in good} - set(counts)
    assert not doubled and not missing, (seed, doubled[:5], sorted(missing)[:5])
    assert len(billed) == len(good)
    # Each committed record is byte for byte what the pure core gives for its input.
    reference = BillingCore(billing_topic="x", deadletter_topic="y", tariff=settings.make_tariff())
    by_id = {f["sessionId"]: f for f in fees}
    for r in billed:
        fee = by_id[r.key.decode()]
        expected = reference.process(ConsumerRecord("t", 0, 0, 0, 0, r.key, orjson.dumps(fee), None, 0, 0,
                                                    FEE_HEADERS))[0]
        assert r.value == expected.value
    dead_keys = collections.Counter(r.key for r in dead)
    assert sorted(dead_keys) == sorted(f["sessionId"].encode() for f in fees if f not in good)
    assert all(n == 1 for n in dead_keys.values())
    assert {orjson.loads(r.value)["reason"] for r in dead} == {Reason.BAD_TIME}
    # The last instance's own view: it is ready, has billed at least what was left, and its lag is drained.
    assert ready_status == 200
    samples_by_name = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(metrics_text) for s in family.samples}
    billed_here = sum(v for (name, _), v in samples_by_name.items() if name == "voicecall_billing_records_total")
    assert 0 < billed_here <= len(good)
    lags = [v for (name, labels), v in samples_by_name.items()
            if name == "voicecall_stage_consumer_lag" and ("stage", "billing") in labels]
    assert lags and all(v == 0 for v in lags)


def ops_port(log: Path) -> int:
    """The ops server's port, from the JSON log of ``voicecall billing`` (it listens on port 0 in tests)."""
    return int(next(orjson.loads(line)["ops_port"] for line in log.read_text().splitlines()
                    if line.startswith("{") and '"ops_port"' in line))


async def scrape(log: Path) -> tuple[str, int]:
    """/metrics text and /readyz status of the ``voicecall billing`` whose JSON log is ``log``."""
    port = ops_port(log)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            return text, response.status


async def wait_http(url: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if loop.time() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


async def test_ingress_push_through_dedup_to_billing(settings: BillingSettings, tmp_path: Path) -> None:
    """The whole path: Huawei fee pushes (F2's two identical CDRs, re-pushed) → ingress → dedup → billing."""
    port = free_port()
    env = env_for(settings, VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_PORT=str(port),
                  VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"))
    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name in ("ingress", "dedup", "billing"):
            with (tmp_path / f"{name}.log").open("wb") as log_file:
                processes[name] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "voicecall", name, env=env, stdout=asyncio.subprocess.DEVNULL,
                    stderr=log_file)
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        pushes = [
            {"eventType": "fee", "feeLst": [samples.F2, samples.F2]},  # the demo's merged, identical CDRs
            {"eventType": "fee", "feeLst": [samples.F5, samples.notification()]},
            {"eventType": "fee", "feeLst": [samples.F5]},  # a re-push of an already received CDR
        ]
        async with aiohttp.ClientSession() as session:
            for push in pushes:
                async with session.post(f"http://127.0.0.1:{port}/notify/fee", data=orjson.dumps(push)) as response:
                    assert response.status == 200, await response.text()
                    assert await response.json(content_type=None) == {"resultcode": "0", "resultdesc": "Success"}
        billed = await read_all(settings, "billing", expect=3, idle=3.0, timeout=90)
        for name, process in processes.items():
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
            assert code == 0, f"{name}: {(tmp_path / f'{name}.log').read_text()[-2000:]}"
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()
    by_key = collections.Counter(r.key for r in billed)
    logs = {name: (tmp_path / f"{name}.log").read_text()[-1500:] for name in processes}
    assert by_key == {samples.F2["sessionId"].encode(): 1, samples.F5["sessionId"].encode(): 1,
                      samples.notification()["sessionId"].encode(): 1}, logs
    values = {r.key: orjson.loads(r.value) for r in billed}
    f2 = values[samples.F2["sessionId"].encode()]
    assert (f2["totalSeconds"], f2["totalBilledMinutes"], f2["amount"]) == (376, 8, 144)
    note = values[samples.notification()["sessionId"].encode()]
    assert (note["serviceType"], note["totalSeconds"], note["totalBilledMinutes"]) == ("001", 60, 1)
