"""``voicecall ingress --workers 2``: both workers serve the one port; a SIGTERM to the parent reaches each worker
once through the supervisor (runtime/children.py), each drains, and the parent exits 0 leaving no worker behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
from ingress_support import create_topics, fee_push, ingress_settings, read_topic, wait_ready

from voicecall.devenv.ports import free_port
from voicecall.runtime.children import Child


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_workers_share_the_port_and_stop_cleanly_on_one_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool", ingress_port=port)
    await create_topics(settings)
    env = dict(os.environ, VOICECALL_KAFKA_BOOTSTRAP=kafka_bootstrap, VOICECALL_TOPIC_PREFIX=settings.topic_prefix,
               VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_PORT=str(port),
               VOICECALL_INGRESS_SPOOL_DIR=str(tmp_path / "spool"), VOICECALL_LOG_FORMAT="json")
    log = tmp_path / "ingress.log"
    parent = Child("ingress", [sys.executable, "-m", "voicecall", "ingress", "--workers", "2"], env, log)
    parent.start()
    assert parent.pid is not None
    url = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        for _ in range(150):
            workers = children_of(parent.pid)
            try:
                await wait_ready(url, timeout=0.5)
                if len(workers) == 2 and log.read_text().count("ingress listening") == 2:
                    break
            except (aiohttp.ClientError, AssertionError):
                pass
            await asyncio.sleep(0.2)
        assert len(workers) == 2 and log.read_text().count("ingress listening") == 2, log.read_text()[-3000:]
        accepted = set()
        async with aiohttp.ClientSession() as session:
            for i in range(20):  # new connections: SO_REUSEPORT spreads them over both workers
                push = fee_push(1, tag=f"w{i}-")
                async with session.post(f"{url}/notify/fee", data=orjson.dumps(push),
                                        headers={"Connection": "close"}) as response:
                    assert response.status == 200
                accepted.update(f["sessionId"] for f in push["feeLst"])
    finally:
        os.kill(parent.pid, signal.SIGTERM)  # the parent alone, as Kubernetes signals the container's process
        assert parent.process is not None
        code = await asyncio.to_thread(parent.process.wait, 90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert all(gone(pid) for pid in workers)
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line.get("event") == "stopped cleanly"]
    assert len(stopped) == 3, text[-3000:]  # both workers and the parent
    assert not any(line.get("event") == "second signal, exiting now" for line in lines), text[-3000:]
    served = {line.get("pid") for line in lines if line.get("event") == "ingress listening"}
    assert served == set(workers)
    records = await read_topic(settings, "fee.raw", len(accepted), timeout=30)
    assert {r.key.decode() for r in records} >= accepted
