"""A broker lost under load on a 3-node cluster (replication 3, min ISR 2): kill -9 of a partition leader (and,
while it is down, of one dedup and one billing instance), and kill -9 of the active controller. Every push
answered 200 is in its topic; fee.unique and billing hold each CDR exactly once; the logs stay short."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from failover_support import (
    Load,
    Pipeline,
    leaders,
    ownership,
    read_topic,
    ready_at,
    session_ids,
    start_pipeline,
    wait_isr,
    wait_owned,
)

from voicecall.devenv.broker import BrokerHandle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE = 10.0  # seconds a killed broker stays down


async def check_outputs(pipeline: Pipeline, load: Load) -> None:
    """Every CDR and status answered 200 is in its raw topic; fee.unique and billing hold each CDR exactly once."""
    name = f"{pipeline.prefix}%s"
    bootstrap = pipeline.bootstrap
    raw = set(session_ids(await read_topic(bootstrap, name % "fee.raw", expect=len(load.fee_ok))))
    assert not load.fee_ok - raw, f"{len(load.fee_ok - raw)} CDRs answered 200 are not in fee.raw"
    status = set(session_ids(await read_topic(bootstrap, name % "status.raw", expect=len(load.status_ok))))
    assert not load.status_ok - status, f"{len(load.status_ok - status)} status pushes answered 200 are missing"
    for suffix in ("fee.unique", "billing"):
        ids = session_ids(await read_topic(bootstrap, name % suffix, expect=len(load.fee_ok), idle=3.0))
        doubled = len(ids) - len(set(ids))
        assert doubled == 0, f"{doubled} CDRs twice in {suffix}"
        assert set(ids) >= load.fee_ok, f"{len(load.fee_ok - set(ids))} CDRs missing from {suffix}"
        assert set(ids) <= load.fee_sent, f"{suffix} holds CDRs never sent"
    assert await read_topic(bootstrap, name % "deadletter", idle=0.5) == []


def log_report(pipeline: Pipeline, since: float) -> dict[str, dict[str, int]]:
    return {s.name: dict(s.levels(since)) for s in pipeline.everything}


async def test_leader_killed_and_consumers_killed_while_it_is_down(whole_cluster: BrokerHandle,
                                                                   tmp_path: Path) -> None:
    cluster = whole_cluster
    pipeline = await start_pipeline(cluster.bootstrap, tmp_path)
    try:
        load = Load(pipeline.url).start()
        await asyncio.sleep(3.0)
        controller = cluster.active_controller()
        led = await leaders(cluster.bootstrap, f"{pipeline.prefix}fee.raw")
        victim = max((n for n in range(1, 4) if n != controller), key=lambda n: list(led.values()).count(n))
        killed_at = time.time()
        await asyncio.to_thread(cluster.kill_node, victim)
        await asyncio.sleep(2.0)
        # one instance of each stage dies while the broker is down: the survivors take its partitions over
        owned = {s.name: ownership(s)[0] for s in (pipeline.dedup[0], pipeline.billing[0])}
        consumers_killed_at = pipeline.dedup[0].kill()
        pipeline.billing[0].kill()
        await wait_owned(pipeline.dedup[1:], timeout=40)
        await wait_owned(pipeline.billing[1:], timeout=40)
        takeover = {s.name: ready_at(s, owned[k.name], consumers_killed_at) for s, k in
                    ((pipeline.dedup[1], pipeline.dedup[0]), (pipeline.billing[1], pipeline.billing[0]))}
        await asyncio.sleep(max(0.0, killed_at + OUTAGE - time.time()))
        await asyncio.to_thread(cluster.start_node, victim)
        await wait_isr(cluster.bootstrap, 3, [f"{pipeline.prefix}fee.raw"])
        await asyncio.sleep(2.0)
        await load.stop()
        print(f"leader kill: node {victim} (controller {controller}); answers {dict(load.codes)}, "
              f"p99 {load.p99():.2f}s, max {max(load.seconds):.2f}s; takeover after consumer kill "
              f"{ {k: round(v - consumers_killed_at, 2) if v else None for k, v in takeover.items()} }")
        assert set(load.codes) == {200}, load.codes
        await check_outputs(pipeline, load)
        print(f"log lines since the broker kill: {log_report(pipeline, killed_at)}")
    finally:
        codes = await pipeline.stop()
    assert codes["ingress"] == 0 and codes["dedup-1"] == 0 and codes["billing-1"] == 0, codes
