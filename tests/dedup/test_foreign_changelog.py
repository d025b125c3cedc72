"""Issue 18's sequence, on a real broker: fee.unique copied into dedup.changelog breaks dedup no longer.

`voicecall replay copy` now refuses the internal topic, so the copy is made the way any other writer could: with
a plain producer, record by record into the same partitions. `voicecall dedup` restarted on that changelog becomes
ready, counts and logs each foreign record once, keeps the state it wrote itself, and processes new records."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from dedup_helpers import DedupSettings, cdr, env_for, fee_record

from kafka_helpers import produce, read_all
from voicecall import topics

CALLS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


async def start_dedup(settings: DedupSettings, log: Path, port: int) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:  # noqa: ASYNC230 - a local log file, opened once per start
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicecall", "dedup", env=env_for(settings, VOICECALL_METRICS_PORT=str(port)),
            stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL)


async def until_ready(port: int, process: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz"))[0] != 200:
        assert process.returncode is None and loop.time() < deadline, log.read_text()[-3000:]  # noqa: ASYNC240
        await asyncio.sleep(0.2)


async def stop(process: asyncio.subprocess.Process, log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 60) == 0, log.read_text()[-3000:]  # noqa: ASYNC240


async def test_a_changelog_full_of_fee_records_no_longer_stops_dedup(settings: DedupSettings, tmp_path: Path
                                                                     ) -> None:
    log, port = tmp_path / "dedup.log", free_port()
    docs = [cdr(n) for n in range(CALLS)]
    process = await start_dedup(settings, log, port)
    try:
        await until_ready(port, process, log)
        await produce(settings, "fee.raw", [fee_record(doc) for doc in docs])
        unique = await read_all(settings, "fee.unique", expect=CALLS, idle=1.0)
        assert len(unique) == CALLS
    finally:
        await stop(process, log)
    own = await read_all(settings, "dedup.changelog", expect=CALLS, idle=0.5)
    assert len(own) == CALLS

    # The command the issue ran: refused now, one line, nothing written.
    env = env_for(settings)
    refused = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "voicecall", "replay", "copy", "--from-topic", "fee.unique",
                         "--to-topic", "dedup.changelog", "--from=-10m", "--to", "now"],
        env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "refusing to copy into dedup.changelog: it is internal" in refused.stderr
    assert len(await read_all(settings, "dedup.changelog", idle=0.5)) == CALLS

    # What the copy did before, by hand: each fee.unique record into the changelog partition of the same number.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        changelog = topics.name(settings, "dedup.changelog")
        foreign = set()
        for record in unique:
            sent = await producer.send_and_wait(changelog, record.value, key=record.key,
                                                partition=record.partition, headers=list(record.headers))
            foreign.add((sent.partition, sent.offset))
    finally:
        await producer.stop()

    log.write_text("")
    process = await start_dedup(settings, log, port)
    try:
        await until_ready(port, process, log)  # every partition ready: no endless "prepare failed"
        _, text = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        # Normally one restore; a prepare repeated under load restores (and counts) again, never differently.
        restores = metric(text, 'voicecall_stage_restore_seconds_count{stage="dedup"}')
        assert restores >= 1
        assert metric(text, 'voicecall_stage_restore_errors_total{stage="dedup"}') == CALLS * restores
        assert metric(text, 'voicecall_stage_restored_records_total{stage="dedup"}') == CALLS * restores
        assert metric(text, "voicecall_dedup_state_keys") == CALLS  # its own state, whole

        # Re-pushes of the first five are still recognised; ten new CDRs pass.
        fresh = [cdr(100 + n) for n in range(10)]
        await produce(settings, "fee.raw", [fee_record(doc) for doc in [*docs[:5], *fresh]])
        after = await read_all(settings, "fee.unique", expect=CALLS + 10, idle=1.5)
        ids = [orjson.loads(r.value)["sessionId"] for r in after]
        assert sorted(ids) == sorted(doc["sessionId"] for doc in [*docs, *fresh])
        _, text = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert metric(text, "voicecall_dedup_duplicates_total") == 5
    finally:
        await stop(process, log)
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    skipped = [e for e in lines if e["event"] == "changelog record skipped: the core cannot apply it"]
    assert len(skipped) == 10 * restores  # the first ten of each restore, each once
    assert {(e["partition"], e["offset"]) for e in skipped} <= foreign
    if restores == 1:
        assert len({(e["partition"], e["offset"]) for e in skipped}) == 10
    assert all("not an 8-byte sessionId hash" in e["error"] and e["level"] == "error" for e in skipped)
    summary = [e for e in lines if e["event"] == "changelog records skipped during restore"]
    assert [e["skipped"] for e in summary] == [CALLS] * int(restores)
    assert not [e for e in lines if e["event"] in ("prepare failed", "stage failed", "service failed")]
    assert await read_all(settings, "deadletter", idle=0.2) == []
