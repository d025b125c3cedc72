"""``voicecall dev``: the embedded default — broker, topics and every service, optionally fed by the simulator.

Each service runs as its own child process (exactly as in production, one ``voicecall <service>`` per process), with
its log in ``.state/logs/<service>.log``. SIGTERM/SIGINT stops the children first (so they flush and commit), then
the broker, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from voicecall import topics
from voicecall.cli import COMMANDS
from voicecall.devenv.broker_cli import add_broker_arguments, listen_port
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.runtime.broker import BrokerHandle, start_broker

SERVICES = ("ingress", "dedup", "billing", "recordings")
DEV_APP_KEY = "dev-app-key"
DEV_APP_SECRET = "dev-app-secret"  # the simulator's recording API checks signatures made with it


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    log_file: object = field(default=None, repr=False)


def available(command: str) -> bool:
    """A service whose module is not in this build yet is skipped instead of failing the whole dev run."""
    return importlib.util.find_spec(COMMANDS[command][0]) is not None


class DevSettings(topics.TopicSettings):
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080


def child_env(settings: DevSettings, state: Path, recording_api: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_INGRESS_HOST": settings.ingress_host,
        "VOICECALL_INGRESS_PORT": str(settings.ingress_port),
        "VOICECALL_LOG_FORMAT": "json",
    })
    env.setdefault("VOICECALL_INGRESS_SPOOL_DIR", str(state / "spool"))
    env.setdefault("VOICECALL_RECORDINGS_STORE", (state / "recordings").resolve().as_uri())
    if recording_api:
        # --simulate: the services talk to the simulator's recording API on loopback, explicitly allowed.
        env.update({
            "VOICECALL_HUAWEI_BASE_URL": recording_api,
            "VOICECALL_HUAWEI_APP_KEY": DEV_APP_KEY,
            "VOICECALL_HUAWEI_APP_SECRET": DEV_APP_SECRET,
            "VOICECALL_RECORDINGS_ALLOWED_HOSTS": "127.0.0.1,localhost",
        })
    return env


async def start_child(child: Child) -> None:
    child.log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(child.log_path, "ab")  # noqa: SIM115, ASYNC230 - open for the child's lifetime; local file
    child.log_file = log_file
    child.process = await asyncio.create_subprocess_exec(
        *child.argv, env=child.env, stdout=log_file, stderr=log_file, stdin=asyncio.subprocess.DEVNULL)


async def stop_child(child: Child, timeout: float = 30.0) -> None:
    process = child.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()


async def supervise(children: list[Child], stop: asyncio.Event, log: object) -> None:
    """Restart a child that died on its own (at most 5 times), like a Deployment would."""
    while not stop.is_set():
        for child in children:
            if child.process is not None and child.process.returncode is not None and child.restarts < 5:
                child.restarts += 1
                log.warning("child exited, restarting", child=child.name,  # type: ignore[attr-defined]
                            code=child.process.returncode, log=str(child.log_path))
                await start_child(child)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)


def simulator_argv(settings: DevSettings, args: argparse.Namespace, recording_port: int) -> list[str]:
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    return [sys.executable, "-m", "voicecall", "simulate",
            "--status-url", f"{base}/notify/status", "--fee-url", f"{base}/notify/fee",
            "--serve-recordings", f"127.0.0.1:{recording_port}",
            "--app-key", DEV_APP_KEY, "--app-secret", DEV_APP_SECRET,
            "--rate", str(args.rate), "--duration", str(args.duration)]


async def wait_for_port(host: str, port: int, timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.2)
    return False


async def run_dev(settings: DevSettings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    log = vlog.get("dev")
    state: Path = args.state_dir
    handle: BrokerHandle = await asyncio.to_thread(
        start_broker, args.broker, port=listen_port(settings.kafka_bootstrap), state_dir=state / "broker",
        bootstrap=settings.kafka_bootstrap)
    print(f"broker ({handle.kind}) on {handle.bootstrap}", flush=True)
    children: list[Child] = []
    try:
        settings = settings.model_copy(update={"kafka_bootstrap": handle.bootstrap})
        if handle.kind == "noida":
            # noida-db rewrites a snapshot of all retained data on every change: keep retention short.
            settings = settings.model_copy(update={"topic_retention": 3600.0})
        outcome = await topics.create(settings)
        print(f"topics ready: {len(outcome)} ({settings.topic_prefix}*)", flush=True)
        recording_port = args.recording_port
        recording_api = f"http://127.0.0.1:{recording_port}" if args.simulate else None
        env = child_env(settings, state, recording_api)
        for name in SERVICES:
            if not available(name):
                print(f"  {name}: not in this build, skipped", flush=True)
                continue
            env_child = dict(env, VOICECALL_METRICS_PORT=str(args.metrics_base_port + SERVICES.index(name)))
            children.append(Child(name, [sys.executable, "-m", "voicecall", name], env_child,
                                  state / "logs" / f"{name}.log"))
        if args.simulate and available("simulate"):
            children.append(Child("simulate", simulator_argv(settings, args, recording_port), env,
                                  state / "logs" / "simulate.log"))
        for child in children:
            if child.name == "simulate":
                await wait_for_port(settings.ingress_host, settings.ingress_port)
            await start_child(child)
        print_next_steps(settings, args, children, state)
        await supervise(children, stop, log)
    finally:
        # Services first, so they flush and commit against a live broker; then the broker.
        await asyncio.gather(*(stop_child(child) for child in reversed(children)))
        await asyncio.to_thread(handle.stop)
        print("dev stopped", flush=True)


def print_next_steps(settings: DevSettings, args: argparse.Namespace, children: list[Child], state: Path) -> None:
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    lines = ["", "voicecall dev is running:"]
    for child in children:
        port = child.env.get("VOICECALL_METRICS_PORT")
        where = f"{base}/metrics" if child.name == "ingress" else (
            f"http://127.0.0.1:{port}/metrics" if child.name != "simulate" else "simulated platform")
        lines.append(f"  {child.name:<11} pid {child.process.pid if child.process else '-':<7} {where}"
                     f"  log {child.log_path}")
    lines += [
        f"  pushes:     curl -X POST {base}/notify -d @your-push.json",
        "  events:     .venv/bin/voicecall tail billing   (or status.raw, fee.unique, recording.stored, deadletter)",
        f"  recordings: {state / 'recordings'}",
        "  stop:       Ctrl-C", "",
    ]
    print("\n".join(lines), flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)
    parser.add_argument("--simulate", action="store_true",
                        help="also run the platform simulator: pushes to the ingress, recording API for the services")
    parser.add_argument("--rate", type=float, default=2.0, help="simulated calls per second (default 2)")
    parser.add_argument("--duration", default="0",
                        help="how long the simulator runs, e.g. 10m; 0 = until stopped (default)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic in dev (default 3)")
    parser.add_argument("--recording-port", type=int, default=18080, help="simulator recording API port")
    parser.add_argument("--metrics-base-port", type=int, default=9101, help="first consumer metrics port")


def main(args: argparse.Namespace) -> int:
    settings = config.load(DevSettings, kafka_bootstrap=args.bootstrap, topic_partitions=args.partitions,
                           topic_replication=1)
    vlog.setup(settings.log_level, settings.log_format)
    return lifecycle.run(lambda stop: run_dev(settings, args, stop))
