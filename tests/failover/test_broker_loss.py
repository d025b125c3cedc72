"""A broker lost under load on a 3-node cluster (replication 3, min ISR 2): kill -9 of a partition leader (and,
while it is down, of one dedup and one billing instance), then kill -9 of the active controller. Every push
answered 200 is in its topic; fee.unique and billing hold each CDR exactly once; the logs stay a few lines long."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from failover_helpers import (
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

from voicecall.devenv.broker import BrokerError, BrokerHandle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE = 10.0  # seconds a killed broker stays down


async def check_outputs(pipeline: Pipeline, load: Load) -> None:
    """Every CDR and status answered 200 is in its raw topic; fee.unique and billing hold each CDR exactly once."""
    raw, status, unique, billing, dead = await asyncio.gather(*(
        read_topic(pipeline.bootstrap, pipeline.prefix, suffix, expect=expect, idle=idle) for suffix, expect, idle in (
            ("fee.raw", len(load.fee_ok), 2.0), ("status.raw", len(load.status_ok), 2.0),
            ("fee.unique", len(load.fee_ok), 3.0), ("billing", len(load.fee_ok), 3.0), ("deadletter", 0, 0.5))))
    assert not load.fee_ok - set(session_ids(raw)), "CDRs answered 200 are missing from fee.raw"
    assert not load.status_ok - set(session_ids(status)), "status pushes answered 200 are missing from status.raw"
    for suffix, records in (("fee.unique", unique), ("billing", billing)):
        ids = session_ids(records)
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} CDRs twice in {suffix}"
        assert set(ids) >= load.fee_ok, f"{len(load.fee_ok - set(ids))} CDRs missing from {suffix}"
        assert set(ids) <= load.fee_sent, f"{suffix} holds CDRs never sent"
    assert dead == []


def warnings(pipeline: Pipeline, since: float) -> dict[str, int]:
    """WARNING-or-worse log lines (and lines that are not JSON, such as a traceback's) per process since ``since``:
    a broker loss must not flood the logs. (The tail's output lines are JSON without a level.)"""
    return {s.name: sum(n for level, n in s.levels(since).items() if level in ("warning", "error", "critical", "raw"))
            for s in pipeline.everything}


async def test_leader_then_controller_killed_under_load(whole_cluster: BrokerHandle, tmp_path: Path) -> None:
    """One load, two broker losses: first a partition leader (not the controller), and while it is down one
    instance of each stage; once it is back, the active controller."""
    cluster = whole_cluster
    pipeline = await start_pipeline(cluster.bootstrap, tmp_path)
    try:
        load = Load(pipeline.url).start()
        await asyncio.sleep(3.0)
        controller = cluster.active_controller()
        led = list((await leaders(cluster.bootstrap, f"{pipeline.prefix}fee.raw")).values())
        victim = max((n for n in range(1, 4) if n != controller), key=led.count)
        killed_at = time.time()
        await asyncio.to_thread(cluster.kill_node, victim)
        await asyncio.sleep(1.0)
        # one instance of each stage dies while the broker is down: the survivors take its partitions over
        dead, alive = (pipeline.dedup[0], pipeline.billing[0]), (pipeline.dedup[1], pipeline.billing[1])
        owned = [ownership(s)[0] for s in dead]
        consumers_killed_at = min(s.kill() for s in dead)
        for survivor in alive:
            await wait_owned([survivor], timeout=40)
        takeover = {s.name: round((ready_at(s, part, consumers_killed_at) or 0) - consumers_killed_at, 1)
                    for s, part in zip(alive, owned, strict=True)}
        await asyncio.sleep(max(0.0, killed_at + OUTAGE - time.time()))
        await asyncio.to_thread(cluster.start_nodes, [victim])
        await wait_isr(cluster.bootstrap, 3, [f"{pipeline.prefix}fee.raw"])
        leader_loss = (dict(load.codes), load.p99(), max(load.seconds))
        load.seconds.clear()

        controller = cluster.active_controller()
        controller_killed_at = time.time()
        await asyncio.to_thread(cluster.kill_node, controller)
        started = time.monotonic()
        while (successor := await asyncio.to_thread(_controller, cluster)) in (None, controller):
            assert time.monotonic() - started < 30, "no new controller elected"
            await asyncio.sleep(0.1)
        elected = time.monotonic() - started
        await asyncio.sleep(max(0.0, controller_killed_at + OUTAGE - time.time()))
        await load.stop()
        print(f"\nleader kill (node {victim}): answers {leader_loss[0]}, p99 {leader_loss[1]:.2f}s, max "
              f"{leader_loss[2]:.2f}s; stage instances killed meanwhile, taken over after {takeover} s\n"
              f"controller kill (node {controller}, node {successor} elected after {elected:.1f}s): answers "
              f"{dict(load.codes)} in all, p99 {load.p99():.2f}s, max {max(load.seconds):.2f}s\n"
              f"warning lines per instance since the first kill: {warnings(pipeline, killed_at)}")
        assert set(load.codes) == {200}, load.codes
        await check_outputs(pipeline, load)  # with the old controller still down: two replicas of three
        # The 10 s goal is checked by the takeover test; here a broker died a second before the instances, and
        # when it held the group's coordinator the new one starts the session clock afresh (and a loaded machine
        # slows every step): 15.9 s was seen at load 12 on 2 cores.
        assert all(0 < seconds < 25 for seconds in takeover.values()), takeover
        # per broker loss: unreachable, reachable again, and the ingress's one "spooling"
        assert all(n <= 6 for n in warnings(pipeline, killed_at).values()), warnings(pipeline, killed_at)
    finally:
        codes = await pipeline.stop()
    assert codes["ingress"] == codes["dedup-1"] == codes["billing-1"] == codes["tail"] == 0, codes


def _controller(cluster: BrokerHandle) -> int | None:
    try:
        return cluster.active_controller()
    except BrokerError:
        return None
