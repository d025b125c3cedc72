"""Two of three brokers down (below min ISR 2, and no controller quorum): the ingress answers 200 from its spool
while the spool has room and 503 only once it is full; an ingress killed with -9 while its spool holds pushes
sends each of them once after its restart (but see check_once_in_order for the push that was in flight); both
spools drain in push order once the brokers are back."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from failover_helpers import create_topics, describe, fee_push, ingress_service, read_topic, readyz, wait_ingress

from voicecall.devenv.broker import BrokerHandle, cli as broker_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SPOOL_MAX = 64 * 1024  # the least VOICECALL_INGRESS_SPOOL_MAX_BYTES takes: ~25 pushes of three CDRs
DEADLINE = 2.0  # VOICECALL_INGRESS_ACK_DEADLINE's default


class Sender:
    """One client pushing fee pushes one after the other (so their order is defined) to one ingress."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.answers: list[tuple[int, int | str, float]] = []  # (push number, status, seconds)

    async def push(self, count: int, *, until_503: int = 0) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for _ in range(count):
                n = len(self.answers)
                started = time.monotonic()
                try:
                    async with session.post(f"{self.url}/notify/fee", data=orjson.dumps(fee_push(f"{self.name}-{n}"))
                                            ) as response:
                        await response.read()
                        status: int | str = response.status
                except aiohttp.ClientError as error:
                    status = type(error).__name__
                self.answers.append((n, status, time.monotonic() - started))
                if until_503 and [a[1] for a in self.answers[-until_503:]] == [503] * until_503:
                    return

    def ok(self) -> list[int]:
        return [n for n, status, _ in self.answers if status == 200]


def check_once_in_order(records: list[Any], sender: Sender) -> dict[str, int]:
    """Every CDR of a push answered 200 in fee.raw, on each partition in push order, and exactly once if the push
    went to the spool without a send.

    Two kinds of push were handed to the producer before the ingress gave up on Kafka, and Kafka may have written
    them all the same: one answered 503 (the spool was full) may arrive, anywhere; one spooled after waiting for the
    acknowledgement deadline may arrive twice — its first send was appended by the surviving leader (no quorum to
    shrink the ISR) and committed once the followers came back, while the send itself failed (the producer was
    renewed, or the ingress killed), so the drainer sent the spooled copy too (the publisher's documented window)."""
    ok = set(sender.ok())
    waited = {n for n, status, seconds in sender.answers if status == 200 and seconds >= DEADLINE * 0.9}
    mine = [r for r in records if r.key.decode().startswith(f"{sender.name}-")]
    push = {id(r): int(r.key.decode().split("-")[-2]) for r in mine}
    ids = [r.key.decode() for r in mine if push[id(r)] in ok]
    wanted = {f"{sender.name}-{n}-{i}@callenabler245.huaweicaas.com" for n in ok for i in range(3)}
    doubled = {i for i in ids if ids.count(i) > 1}
    twice_allowed = {i for i in doubled if int(i.split("-")[-2]) in waited and ids.count(i) == 2}
    assert not wanted - set(ids), f"{sender.name}: {len(wanted - set(ids))} CDRs answered 200 are missing"
    assert doubled == twice_allowed, f"{sender.name}: CDRs twice: {sorted(doubled - twice_allowed)[:6]}"
    for partition in {r.partition for r in mine}:
        pushes = [push[id(r)] for r in sorted(mine, key=lambda r: r.offset)
                  if r.partition == partition and push[id(r)] in ok]
        pushes = [n for i, n in enumerate(pushes) if n not in pushes[:i]]  # a doubled push counts where it came first
        assert pushes == sorted(pushes), f"{sender.name}: partition {partition} out of push order: {pushes}"
    return {"pushes": len(ok), "records": len(ids), "waited_for_deadline": len(waited),
            "cdrs_twice": len(doubled), "refused_yet_written": len({push[id(r)] for r in mine} - ok)}


async def wait_drained(url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: Any = None
    while True:
        try:
            state = await readyz(url)
        except (aiohttp.ClientError, OSError) as error:  # a restarted ingress is not listening yet
            state = error
        else:
            if state.get("broker") == "up" and state["spool"]["entries"] == 0:
                return dict(state)
        assert time.monotonic() < deadline, f"spool of {url} not drained: {state}"
        await asyncio.sleep(0.2)


async def test_two_brokers_down_spool_503_kill_and_drain_in_order(whole_cluster: BrokerHandle,
                                                                   tmp_path: Path) -> None:
    cluster = whole_cluster
    prefix = f"s{uuid.uuid4().hex[:8]}."
    await create_topics(cluster.bootstrap, prefix)
    small, small_url = ingress_service(cluster.bootstrap, prefix, tmp_path, "small",
                                       VOICECALL_INGRESS_SPOOL_MAX_BYTES=str(SPOOL_MAX),
                                       VOICECALL_INGRESS_SPOOL_SEGMENT_BYTES="8192")
    crash, crash_url = ingress_service(cluster.bootstrap, prefix, tmp_path, "crash")
    filler, crasher = Sender(small_url, "small"), Sender(crash_url, "crash")
    await asyncio.gather(small.start(), crash.start())
    try:
        await asyncio.gather(wait_ingress(small_url), wait_ingress(crash_url))
        await asyncio.gather(filler.push(5), crasher.push(5))
        (raw,) = await describe(cluster.bootstrap, [f"{prefix}fee.raw"])
        assert {len(p["replicas"]) for p in raw["partitions"]} == {3}  # the cluster's brokers, not replication 1
        down = [n for n in (1, 2, 3) if n != cluster.active_controller()]  # the quorum goes with them
        for node in down:
            cluster.kill_node(node)
        outage = len(filler.answers)
        await asyncio.gather(filler.push(60, until_503=3), crasher.push(20))
        full = (await readyz(small_url))["spool"]
        crash.kill()
        await crash.process.wait()  # type: ignore[union-attr]

        codes = [status for _, status, _ in filler.answers[outage:]]
        first_503 = codes.index(503)
        print(f"\ntwo brokers down: {first_503} pushes answered 200 from a {SPOOL_MAX} B spool, then 503 "
              f"(spool {full['bytes']} B, {full['entries']} entries); slowest 200 "
              f"{max(s for _, status, s in filler.answers[outage:] if status == 200):.2f}s")
        assert first_503 >= 10 and set(codes[:first_503]) == {200} and set(codes[first_503:]) == {503}, codes
        assert full["bytes"] > SPOOL_MAX - 4096, full
        assert {status for _, status, _ in crasher.answers} == {200}, crasher.answers

        # as `voicecall broker --nodes 3` does when a node dies
        await asyncio.to_thread(broker_cli.revive, cluster)
        assert all(node.running for node in cluster.nodes)
        await crash.start()
        await asyncio.gather(wait_drained(small_url), wait_drained(crash_url))
        await asyncio.gather(filler.push(3), crasher.push(3))  # and straight to Kafka again
        assert [status for _, status, _ in filler.answers[-3:] + crasher.answers[-3:]] == [200] * 6
        records = await read_topic(cluster.bootstrap, prefix, "fee.raw",
                                   expect=3 * (len(filler.ok()) + len(crasher.ok())))
        print(f"drained in order: {check_once_in_order(records, filler)} (live), "
              f"{check_once_in_order(records, crasher)} (killed -9 with pushes in its spool, restarted)")
    finally:
        await asyncio.gather(small.stop(), crash.stop())
