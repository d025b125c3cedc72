"""The ingress's preStop hook (deploy/k8s/base/ingress.yaml) run for real: it waits while the spool holds pushes,
returns once it is empty, and understands what the real `voicecall ingress` answers on /readyz."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from deploy_helpers import K8S

from kafka_helpers import new_prefix
from voicecall import topics
from voicecall.devenv.ports import free_port


def prestop_command() -> list[str]:
    docs = yaml.safe_load_all((K8S / "base" / "ingress.yaml").read_text())
    ingress = next(d for d in docs if d["kind"] == "StatefulSet")
    command = list(ingress["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"])
    assert command[0] == "python", "the image's virtualenv python is on PATH"
    return [sys.executable, *command[1:]]


async def run_prestop(port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "VOICECALL_INGRESS_PORT": str(port)}
    return await asyncio.create_subprocess_exec(*prestop_command(), env=env)


async def test_prestop_waits_for_the_spool_to_drain() -> None:
    state: dict[str, Any] = {"status": 200, "entries": 3}

    async def readyz(_: web.Request) -> web.Response:
        body = {"ready": state["status"] == 200, "broker": "up", "spool": {"usable": True, "entries": state["entries"]}}
        return web.json_response(body, status=state["status"])

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proc = await run_prestop(port)
    try:
        await asyncio.sleep(8)
        assert proc.returncode is None, "the hook returned while the spool still held pushes"
        # the pod is not ready any more (503) but its body says the spool is empty: done
        state.update(status=503, entries=0)
        started = time.monotonic()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()


async def test_prestop_understands_the_real_ingress(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = new_prefix()
    await topics.create(topics.TopicSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix,
                                             topic_partitions=3, topic_replication=1))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")},
           "VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap, "VOICECALL_TOPIC_PREFIX": prefix,
           "VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_INGRESS_PORT": str(port),
           "VOICECALL_INGRESS_SPOOL_DIR": str(tmp_path / "spool"), "VOICECALL_LOG_FORMAT": "json"}
    ingress = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "ingress", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL)
    try:
        detail: dict[str, Any] = {}
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not detail.get("ready"):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                        detail = await answer.json()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.3)
        assert detail.get("ready") is True, detail
        assert detail["spool"]["entries"] == 0, "the hook reads spool.entries from /readyz"
        hook = await run_prestop(port)
        assert await asyncio.wait_for(hook.wait(), 15) == 0
    finally:
        if ingress.returncode is None:
            ingress.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(ingress.wait(), 40)
            except TimeoutError:
                ingress.kill()
                await ingress.wait()
    assert ingress.returncode == 0
