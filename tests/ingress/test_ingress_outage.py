"""Broker outage under steady load: every push answered 200, every event in Kafka afterwards, spool empty."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
from ingress_helpers import fee_push, ingress_settings, start_ingress, status_push, wait_ready

from kafka_helpers import create_topics, read_all
from voicecall.devenv.broker import start_broker
from voicecall.devenv.ports import free_port

OUTAGE_SECONDS = 12.0


async def test_broker_outage_under_load_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "broker"
    broker = await asyncio.to_thread(start_broker, "apache", port=port, state_dir=state)
    settings = ingress_settings(broker.bootstrap, tmp_path / "spool", ingress_ack_deadline=1.0)
    await create_topics(settings)
    served = await start_ingress(settings)
    answers: list[int] = []
    sent_fee: set[str] = set()
    sent_status: set[str] = set()
    stop_load = asyncio.Event()

    async def client(n: int) -> None:
        i = 0
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop_load.is_set():
                i += 1
                if i % 2:
                    push = fee_push(3, tag=f"c{n}-{i}-")
                    ids = {f["sessionId"] for f in push["feeLst"]}
                    url, bucket = f"{served.url}/notify/fee", sent_fee
                else:
                    push = status_push(f"st-c{n}-{i}")
                    ids = {push["statusInfo"]["sessionId"]}
                    url, bucket = f"{served.url}/notify/status", sent_status
                async with session.post(url, data=orjson.dumps(push)) as response:
                    answers.append(response.status)
                    if response.status == 200:
                        bucket.update(ids)
                await asyncio.sleep(0.01)

    try:
        await wait_ready(served.url)
        load = [asyncio.create_task(client(n)) for n in range(4)]
        await asyncio.sleep(2.0)
        before = len(answers)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(OUTAGE_SECONDS)
        during = len(answers) - before
        async with aiohttp.ClientSession() as session, session.get(f"{served.url}/readyz") as response:
            ready = await response.json()
        assert response.status == 200 and ready["broker"] == "down" and ready["spool"]["entries"] > 0, ready
        broker = await asyncio.to_thread(start_broker, "apache", port=port, state_dir=state)
        await asyncio.sleep(3.0)
        stop_load.set()
        await asyncio.gather(*load)

        assert answers and all(code == 200 for code in answers), {c: answers.count(c) for c in set(answers)}
        assert during > 100, f"only {during} pushes answered during the outage"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with aiohttp.ClientSession() as session, session.get(f"{served.url}/readyz") as response:
                ready = await response.json()
            if ready["spool"]["entries"] == 0 and ready["spool"]["segments"] == 0:
                break
            await asyncio.sleep(0.2)
        assert ready["spool"]["entries"] == 0 and ready["spool"]["segments"] == 0, ready
        assert not list((tmp_path / "spool").glob("*.seg"))

        fees = await read_all(settings, "fee.raw", expect=len(sent_fee), timeout=60, idle=0)
        statuses = await read_all(settings, "status.raw", expect=len(sent_status), timeout=60, idle=0)
        assert {r.key.decode() for r in fees} >= sent_fee
        assert {r.key.decode() for r in statuses} >= sent_status
    finally:
        stop_load.set()
        await served.stop()
        await asyncio.to_thread(broker.stop)
