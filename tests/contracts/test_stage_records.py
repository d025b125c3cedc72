"""Every record the running stages produce fits its topic's contract (schemas/asyncapi.yaml + the schema files).

The whole pipeline runs as separate `voicecall …` processes on the session broker, fed by `voicecall simulate`
(status and fee pushes with re-pushes, recordings served by its recording API, some of them missing) plus one
push that is not JSON; then every record of every topic is validated with tests/contract_helpers.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
from aiokafka import TopicPartition

from contract_helpers import contracts, validate_records
from kafka_helpers import fresh_topics, read_to_end
from voicecall import topics
from voicecall.devenv.ports import free_port
from voicecall.replay import names
from voicecall.runtime import cloudevents, config
from voicecall.runtime.kafka import make_consumer, make_producer


async def counts(settings: config.CommonSettings) -> dict[str, int]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        existing = await names.partitions(settings)
        result = {}
        for suffix in contracts():
            topic = topics.name(settings, suffix)
            tps = [TopicPartition(topic, p) for p in existing[topic]]
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            result[suffix] = sum(ends[tp] - starts[tp] for tp in tps)
        return result
    finally:
        await consumer.stop()


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up")
            await asyncio.sleep(0.2)


async def test_records_of_every_stage_fit_their_contract(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await fresh_topics(kafka_bootstrap)
    prefix = settings.topic_prefix
    ingress_port, api_port = free_port(), free_port()
    env = dict(os.environ) | {
        "VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap, "VOICECALL_TOPIC_PREFIX": prefix,
        "VOICECALL_LOG_FORMAT": "json", "VOICECALL_METRICS_HOST": "127.0.0.1", "VOICECALL_METRICS_PORT": "0",
        "VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_INGRESS_PORT": str(ingress_port),
        "VOICECALL_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        "VOICECALL_HUAWEI_BASE_URL": f"http://127.0.0.1:{api_port}", "VOICECALL_HUAWEI_APP_KEY": "contract-key",
        "VOICECALL_HUAWEI_APP_SECRET": "contract-secret", "VOICECALL_RECORDINGS_ALLOWED_HOSTS": "127.0.0.1",
        "VOICECALL_RECORDINGS_STORE": (tmp_path / "store").as_uri(), "VOICECALL_BATCH_TIME": "50ms",
    }
    # dedup feeds fee.unique when this build has it; otherwise fee.raw is copied there with `voicecall replay copy`.
    has_dedup = importlib.util.find_spec("voicecall.dedup.cli") is not None
    services = ["ingress", "billing", "recordings", "calls"] + (["dedup"] if has_dedup else [])
    procs = {name: await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", name, env=env, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"{name}.log", "wb"))  # noqa: SIM115, ASYNC230 - the child owns it
        for name in services}
    try:
        await wait_http(f"http://127.0.0.1:{ingress_port}/healthz")
        simulate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicecall", "simulate", "--notify-url", f"http://127.0.0.1:{ingress_port}/notify",
            "--calls", "16", "--seed", "8", "--speed", "0", "--record-share", "1", "--missing-recordings", "0.3",
            "--recording-max-size", "4KiB", "--repush-interval", "50ms", "--max-repushes", "1",
            "--serve-recordings", f"127.0.0.1:{api_port}", "--linger", "60s",
            "--app-key", "contract-key", "--app-secret", "contract-secret",
            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "simulate.log", "wb"))  # noqa: SIM115, ASYNC230
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{ingress_port}/notify/fee", data=b"{not json") as response:
                assert response.status == 400
            async with session.post(f"http://127.0.0.1:{ingress_port}/notify",
                                    json={"eventType": "weird", "x": 1}) as response:
                assert response.status == 200
        # A unique fee record billing cannot read: billing's deadletter record is checked too.
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topics.name(settings, "fee.unique"),
                                         orjson.dumps({"sessionId": "bad-time", "callEndTime": "24/01/2019"}),
                                         key=b"bad-time", headers=cloudevents.headers(cloudevents.TYPE_FEE, "/test"))
        finally:
            await producer.stop()
        deadline = time.monotonic() + 90
        seen: dict[str, int] = {}
        copied = False
        while time.monotonic() < deadline:
            seen = await counts(settings)
            if not has_dedup and not copied and seen["fee.raw"] >= 16:
                await asyncio.sleep(1)  # let the re-pushes land too
                copy = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.raw",
                    "--to-topic", "fee.unique", "--from", "2000-01-01T00:00:00Z", env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                assert await copy.wait() == 0
                copied = True
            if all(seen[s] > 0 for s in seen) and seen["billing"] >= 16 and (
                    len(await read_to_end(settings, "billing", poll=0.5))
                    == len(await read_to_end(settings, "fee.unique", poll=0.5)) - 1):
                break
            await asyncio.sleep(0.5)
        simulate.send_signal(signal.SIGTERM)
        await asyncio.wait_for(simulate.wait(), 30)
        assert all(seen[s] > 0 for s in seen) and seen["billing"] >= 16, (
            seen, {n: (tmp_path / f"{n}.log").read_text()[-1500:] for n in services})
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            await asyncio.wait_for(proc.wait(), 60)
            assert proc.returncode == 0, (name, (tmp_path / f"{name}.log").read_text()[-1500:])

    checked = {}
    for suffix in contracts():
        records = await read_to_end(settings, suffix, poll=0.5)
        checked[suffix] = validate_records(records, prefix=prefix)
    # Every topic had records to check (offsets counted while waiting include transaction markers, so they only
    # say that something arrived), and billing holds one record per unique fee record.
    assert all(count > 0 for count in checked.values()), checked
    assert checked["billing"] == checked["fee.unique"] - 1 >= 16, checked  # all but the unreadable one
    stages = {orjson.loads(r.value)["stage"] for r in await read_to_end(settings, "deadletter", poll=0.5)}
    assert {"ingress", "billing"} <= stages
