"""Crash test: ``voicecall calls`` as a subprocess, SIGKILLed five times at random moments while the inputs of 5,000
calls arrive (status pushes out of order and some twice, CDRs, billing and recording records). Read with
read_committed, ``calls`` must end with every call's record exactly as a clean run makes it, and hold exactly one
record per distinct input: none lost, none applied twice."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from calls_helpers import KafkaCallsSettings, Raw, calls, env_for, finals, inputs_of, produce_raws, references

from kafka_helpers import PARTITIONS, committed_offsets, read_all
from process_helpers import Crashing
from voicecall import topics
from voicecall.runtime import kafka
from voicecall.runtime.partition import partitioner

KILLS = 5
CALLS = 5000


def feed_of(rng: random.Random) -> tuple[list[Raw], list[Raw]]:
    """(the distinct inputs, what is fed: each call's status pushes partly out of order, a tenth of all twice)."""
    distinct: list[Raw] = []
    fed: list[Raw] = []
    for call in calls(CALLS, seed=rng.getrandbits(32), rate=50.0):
        raws = inputs_of(call)
        distinct += raws
        statuses = raws[:len(call.status)]
        for i in range(len(statuses) - 1):
            if rng.random() < 0.2:  # a late push: after the call's next one
                statuses[i], statuses[i + 1] = statuses[i + 1], statuses[i]
        fed += statuses + raws[len(call.status):]
    fed += rng.sample(distinct, k=len(distinct) // 10)
    return distinct, fed


async def keep_every_version(settings: KafkaCallsSettings) -> None:
    """No compaction of the test's ``calls`` topic while it runs (the brokers' log cleaner may otherwise remove
    older versions of a call before the test counts them): its configs with a minimum compaction lag of an hour.
    AlterConfigs replaces a topic's whole config, so every planned one is given."""
    (planned,) = [t for t in topics.plan(settings) if t.spec.suffix == "calls"]
    admin = kafka.make_admin(settings)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, planned.name,
                                                  configs={**planned.configs, "min.compaction.lag.ms": "3600000"})])
    finally:
        await admin.close()


async def test_sigkill_five_times_loses_and_repeats_nothing(settings: KafkaCallsSettings, tmp_path: Path) -> None:
    await keep_every_version(settings)
    seed = int(os.environ.get("CALLS_KILL_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"kill test seed {seed} (CALLS_KILL_SEED={seed} repeats the feed and the kill moments)")
    rng = random.Random(seed)
    distinct, fed = feed_of(rng)
    expected = references(distinct)
    log = tmp_path / "calls.log"

    async def feeder() -> None:
        chunk = len(fed) // 30 + 1
        for i in range(0, len(fed), chunk):
            await produce_raws(settings, fed[i:i + chunk])
            await asyncio.sleep(rng.uniform(0.3, 0.9))

    feeding = asyncio.create_task(feeder())
    stage = Crashing("calls", env_for(settings), log)
    await stage.start()
    try:
        await stage.kill_at_random_moments(KILLS, rng, starting=(0.5, 3.0), processing=(0.05, 1.5))
        await feeding
        seen = await read_all(settings, "calls", expect=len(distinct), idle=2.0, timeout=120)
    finally:
        feeding.cancel()
        code = await stage.stop()
    assert stage.kills == KILLS
    assert code == 0, log.read_text()[-3000:]  # the last one stops cleanly on SIGTERM
    last = finals(seen)
    wrong = [key for key, value in expected.items() if last.get(key) != value]
    assert not wrong, f"{len(wrong)} calls end differently from a clean run (seed {seed}), e.g. {wrong[:3]}"
    assert len(last) == len(expected) == CALLS
    # One record per distinct input (each changes its call once), none twice: nothing was applied twice, and
    # nothing of an aborted transaction is visible.
    assert len(seen) == len(distinct), f"{len(seen)} records for {len(distinct)} distinct inputs (seed {seed})"
    assert len({(r.key, r.value) for r in seen}) == len(seen)
    assert all(r.partition == partitioner(r.key, list(range(PARTITIONS)), list(range(PARTITIONS))) for r in seen)
    group = kafka.group_id(settings, "calls")
    for suffix in ("status.raw", "fee.unique", "billing", "recording.stored"):
        offsets = await committed_offsets(settings, group, suffix)
        consumed = sum(o or 0 for o in offsets.values())
        assert consumed == sum(1 for raw in fed if raw[0] == suffix), suffix  # every input read, to the end
    assert await read_all(settings, "deadletter", idle=0.2) == []
    assert topics.name(settings, "calls") == seen[0].topic
