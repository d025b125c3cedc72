"""How fast a stage's partitions are processing again: after kill -9 of an instance (its partitions wait for the
group to notice, then a survivor prepares them), and what a planned replacement (SIGTERM of one instance while a
new one starts) costs the survivors (their partitions are revoked at every rebalance of the eager protocol)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from failover_helpers import (
    PARTITIONS,
    Service,
    create_topics,
    fee_push,
    ownership,
    pauses,
    ready_at,
    service_env,
    stamp,
    wait_owned,
)

from kafka_helpers import new_prefix
from voicecall.devenv.broker import BrokerHandle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def feed(bootstrap: str, topic: str, stop: asyncio.Event) -> int:
    """fee.raw records at ~200/s until ``stop``; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for n in itertools.count():
            if stop.is_set():
                break
            for cdr in fee_push(f"feed-{n}", 10)["feeLst"]:
                await producer.send(topic, orjson.dumps(cdr), key=cdr["sessionId"].encode())
                sent += 1
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def test_takeover_after_kill_and_survivors_pause_during_a_replacement(whole_cluster: BrokerHandle,
                                                                            tmp_path: Path) -> None:
    bootstrap = whole_cluster.bootstrap
    prefix = new_prefix()
    await create_topics(bootstrap, prefix)
    env = service_env(bootstrap, prefix)
    stages = [Service("dedup", env, tmp_path / f"dedup-{i}.log", f"dedup-{i}") for i in range(4)]
    stop = asyncio.Event()
    feeding = asyncio.create_task(feed(bootstrap, f"{prefix}fee.raw", stop))
    try:
        await asyncio.gather(*(s.start() for s in stages[:3]))
        await wait_owned(stages[:3])
        await asyncio.sleep(2.0)

        # kill -9: the group notices after the session timeout, then a survivor fences, restores and resumes
        owned, _ = ownership(stages[2])
        killed_at = stages[2].kill()
        await wait_owned(stages[:2], timeout=60)
        takeover = (ready_at(stages[:2], owned, killed_at) or 0) - killed_at
        kill_pauses = [p for s in stages[:2] for p in pauses(s, killed_at)]
        await asyncio.sleep(2.0)

        # a planned replacement: one instance told to stop while a new one starts
        replaced_at = time.time()
        await stages[3].start()
        code = await stages[1].stop()
        await wait_owned([stages[0], stages[3]], timeout=60)
        replace_pauses = pauses(stages[0], replaced_at)
        print(f"\ntakeover after kill -9: {takeover:.1f}s for partitions {sorted(owned)}; survivors' pauses in "
              f"that rebalance {[round(p, 2) for p in kill_pauses]}; during the replacement "
              f"{[round(p, 2) for p in replace_pauses]}")
        assert code == 0
        assert 0 < takeover < 10.0, takeover
        assert replace_pauses and max(replace_pauses) < 2.0, replace_pauses
    finally:
        stop.set()
        await feeding
        await asyncio.gather(*(s.stop() for s in stages))
    assert len(owned) == PARTITIONS // 3


async def test_a_static_member_restarted_in_time_gets_its_partitions_back_without_a_rebalance(
        whole_cluster: BrokerHandle, tmp_path: Path) -> None:
    """VOICECALL_CONSUMER_INSTANCE_ID (static membership): a crashed instance restarted under the same id within the
    session timeout, as a Kubernetes container restart in the same pod would, takes its partitions back; the other
    instance goes on as if nothing happened."""
    bootstrap = whole_cluster.bootstrap
    prefix = new_prefix()
    await create_topics(bootstrap, prefix)
    # A static member's session timeout is chosen to cover its restart (a process start; longer on a busy machine).
    first, second = (Service("dedup", service_env(bootstrap, prefix, VOICECALL_CONSUMER_INSTANCE_ID=f"dedup-{i}",
                                                  VOICECALL_CONSUMER_SESSION_TIMEOUT="20s"),
                             tmp_path / f"dedup-{i}.log", f"dedup-{i}") for i in range(2))
    stop = asyncio.Event()
    feeding = asyncio.create_task(feed(bootstrap, f"{prefix}fee.raw", stop))
    try:
        await first.start()
        await wait_owned([first])
        await second.start()  # the first stays the group's leader: the second is the one restarted
        await wait_owned([first, second])
        owned, _ = ownership(second)
        killed_at = second.kill()
        await second.process.wait()  # type: ignore[union-attr]
        await second.start()
        await wait_owned([first, second], timeout=30)
        back = (ready_at(second, owned, killed_at) or 0) - killed_at
        print(f"\nstatic member killed and restarted: its partitions {sorted(owned)} ready again after {back:.1f}s")
        assert ownership(second)[0] == owned
        assert [e for e in first.entries() if e.get("event") == "partitions revoked" and stamp(e) >= killed_at] == []
        assert 0 < back < 20.0
    finally:
        stop.set()
        await feeding
        await asyncio.gather(first.stop(), second.stop())
