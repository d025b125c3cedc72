"""``voicecall dev``: the embedded default — broker, topics and every service, optionally fed by the simulator.

Each service runs as its own child process (exactly as in production, one ``voicecall <service>`` per process), with
its log in ``.state/logs/<service>.log``. Children run in their own process groups, so a Ctrl-C on the terminal
reaches ``voicecall dev`` alone; it then stops the simulator, the ingress and the consumers in that order with one
SIGTERM each (so they flush and commit), then the broker, prints each child's exit status and exits 0 when every
service stopped cleanly. A second Ctrl-C kills everything at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from voicecall import topics
from voicecall.cli import COMMANDS
from voicecall.devenv.broker_cli import add_broker_arguments, listen_port
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.runtime.broker import BrokerError, BrokerHandle, free_port, port_is_free, start_broker

SERVICES = ("ingress", "dedup", "billing", "recordings")
CONSUMERS = ("dedup", "billing", "recordings")  # each serves /metrics on its own port: base, base+1, base+2
DEFAULT_RECORDING_PORT = 18080
DEFAULT_BOOTSTRAP = "localhost:9092"
DEV_APP_KEY = "dev-app-key"
DEV_APP_SECRET = "dev-app-secret"  # the simulator's recording API checks signatures made with it


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    oneshot: bool = False  # the simulator: when it finishes by itself it is not started again
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    log_start: int = 0  # size of the (appended) log before this run
    log_file: IO[bytes] | None = field(default=None, repr=False)


# Each service's settings class: validated up front, so a bad VOICECALL_* value stops `voicecall dev` at start with
# the variable's name instead of a child that fails again and again behind a "running" banner.
SETTINGS_CLASSES = {
    "ingress": ("voicecall.ingress.config", "IngressSettings"),
    "dedup": ("voicecall.dedup.config", "DedupSettings"),
    "billing": ("voicecall.billing.config", "BillingSettings"),
    "recordings": ("voicecall.recordings.config", "RecordingsSettings"),
    "simulate": ("voicecall.simulator.cli", "SimulateSettings"),
}
EXIT_USAGE = 2  # what every command exits with on a bad setting or argument


def check_service_settings(names: tuple[str, ...]) -> list[str]:
    """The configuration errors each service would stop with, from the current environment."""
    problems = []
    for name in names:
        module_name, class_name = SETTINGS_CLASSES[name]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # not in this build; skipped later
        try:
            cls()
        except ValidationError as error:
            problems.append(f"{name}: {config.describe_error(cls, error)}")
    return problems


def available(command: str) -> bool:
    """A service whose module is not in this build yet is skipped instead of failing the whole dev run."""
    return importlib.util.find_spec(COMMANDS[command][0]) is not None


class DevSettings(topics.TopicSettings):
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080


def metrics_ports(base: int) -> dict[str, int]:
    return {name: base + offset for offset, name in enumerate(CONSUMERS)}


def child_env(settings: DevSettings, state: Path, recording_api: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_INGRESS_HOST": settings.ingress_host,
        "VOICECALL_INGRESS_PORT": str(settings.ingress_port),
        "VOICECALL_LOG_FORMAT": "json",
    })
    env.setdefault("VOICECALL_METRICS_HOST", "127.0.0.1")  # a dev machine: ops endpoints on loopback only
    env.setdefault("VOICECALL_INGRESS_SPOOL_DIR", str(state / "spool"))
    env.setdefault("VOICECALL_RECORDINGS_STORE", (state / "recordings").resolve().as_uri())
    if recording_api:
        # --simulate: the services talk to the simulator's recording API on loopback, explicitly allowed. The
        # simulator reads the same key and secret from the environment (never from its command line, which
        # `ps` shows to everyone).
        env.update({
            "VOICECALL_HUAWEI_BASE_URL": recording_api,
            "VOICECALL_HUAWEI_APP_KEY": DEV_APP_KEY,
            "VOICECALL_HUAWEI_APP_SECRET": DEV_APP_SECRET,
            "VOICECALL_RECORDINGS_ALLOWED_HOSTS": "127.0.0.1,localhost",
        })
    return env


class PortInUse(Exception):
    pass


def choose_ports(settings: DevSettings, args: argparse.Namespace) -> tuple[int, int | None]:
    """Check the ports the services will listen on before anything starts; returns (metrics base, recording API
    port). A taken port stops ``voicecall dev`` with a message naming the setting to change; only the recording
    API's default port (an internal detail of --simulate) is replaced by a free one."""
    problems = []
    if settings.ingress_port and not port_is_free(settings.ingress_port, settings.ingress_host):
        problems.append(f"VOICECALL_INGRESS_PORT={settings.ingress_port}: {settings.ingress_host}:"
                        f"{settings.ingress_port} is already in use")
    base = args.metrics_base_port if args.metrics_base_port is not None else settings.metrics_port
    source = "--metrics-base-port" if args.metrics_base_port is not None else "VOICECALL_METRICS_PORT"
    for name, port in metrics_ports(base).items():
        if not 0 < port <= 65535 or not port_is_free(port):
            problems.append(f"{source}={base}: port {port} ({name} /metrics) is already in use or invalid "
                            f"(the consumers use {base}..{base + len(CONSUMERS) - 1})")
    recording_port: int | None = None
    if args.simulate:
        recording_port = args.recording_port
        if recording_port is None:
            recording_port = (DEFAULT_RECORDING_PORT if port_is_free(DEFAULT_RECORDING_PORT)
                              else free_port())
        elif not port_is_free(recording_port):
            problems.append(f"--recording-port={recording_port}: 127.0.0.1:{recording_port} is already in use")
    if problems:
        raise PortInUse("\n  ".join(problems))
    return base, recording_port


async def start_child(child: Child) -> None:
    child.log_path.parent.mkdir(parents=True, exist_ok=True)
    if child.log_file is None:
        child.log_file = open(child.log_path, "ab")  # noqa: SIM115, ASYNC230 - open for the child's lifetime
        child.log_start = child.log_file.tell()
    # start_new_session: a terminal Ctrl-C reaches only `voicecall dev`, which then stops each child with exactly
    # one SIGTERM; a second signal would make a child skip its drain.
    child.process = await asyncio.create_subprocess_exec(
        *child.argv, env=child.env, stdout=child.log_file, stderr=child.log_file, stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True)


async def stop_child(child: Child, timeout: float = 30.0) -> None:
    process = child.process
    if process is not None and process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            kill_child(child)
            await process.wait()
    if child.log_file is not None:
        child.log_file.close()
        child.log_file = None


def kill_child(child: Child) -> None:
    process = child.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


async def supervise(children: list[Child], stop: asyncio.Event, log: object) -> None:
    """Restart a service that died on its own (at most 5 times), like a Deployment would. The simulator is not
    restarted once it has finished (``--duration``) — it would replay another run."""
    while not stop.is_set():
        for child in children:
            process = child.process
            if process is None or process.returncode is None:
                continue
            if process.returncode == EXIT_USAGE and not child.oneshot:
                # a bad setting or argument: starting it again cannot help
                log.error("child refused its configuration, not restarting",  # type: ignore[attr-defined]
                          child=child.name, log=str(child.log_path))
                print(f"voicecall dev: {child.name} stopped at start (exit {EXIT_USAGE}, bad configuration); "
                      f"see {child.log_path}:\n{log_tail(child)}", file=sys.stderr, flush=True)
                child.restarts = 5
                continue
            if child.oneshot:
                log.info("child finished", child=child.name, code=process.returncode,  # type: ignore[attr-defined]
                         log=str(child.log_path))
                child.process = None
                continue
            if child.restarts < 5:
                child.restarts += 1
                log.warning("child exited, restarting", child=child.name,  # type: ignore[attr-defined]
                            code=process.returncode, log=str(child.log_path))
                await start_child(child)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def this_runs_log(child: Child) -> str:
    """What the child wrote to its (appended) log since ``voicecall dev`` started it."""
    try:
        with child.log_path.open("rb") as log:
            log.seek(child.log_start)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def log_tail(child: Child, lines: int = 15) -> str:
    return "\n".join(this_runs_log(child).splitlines()[-lines:])


def simulator_argv(settings: DevSettings, args: argparse.Namespace, recording_port: int) -> list[str]:
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    return [sys.executable, "-m", "voicecall", "simulate",
            "--status-url", f"{base}/notify/status", "--fee-url", f"{base}/notify/fee",
            "--serve-recordings", f"127.0.0.1:{recording_port}",
            "--rate", str(args.rate), "--duration", str(args.duration)]


async def wait_for_port(host: str, port: int, timeout: float = 30.0, child: Child | None = None,
                        stop: asyncio.Event | None = None) -> bool:
    """Until something listens on ``host:port`` (False on timeout, when ``child`` exited or ``stop`` is set)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if child is not None and child.process is not None and child.process.returncode is not None:
            return False
        if stop is not None and stop.is_set():
            return False
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.2)
    return False


@dataclass
class DevRun:
    """What ``voicecall dev`` started; ``force_stop`` is the second-signal path (kill everything now)."""

    children: list[Child] = field(default_factory=list)
    broker: BrokerHandle | None = None
    unclean: list[str] = field(default_factory=list)

    def force_stop(self) -> None:
        for child in self.children:
            kill_child(child)
        if self.broker is not None:
            self.broker.kill()


async def stop_all(run: DevRun) -> None:
    """The simulator first (no new pushes), then the ingress (its last pushes reach Kafka), then the consumers;
    one SIGTERM each, so each drains, flushes and commits against a live broker; then the broker."""
    by_name = {child.name: child for child in run.children}
    for first in ("simulate", "ingress"):
        if first in by_name:
            await stop_child(by_name[first])
    await asyncio.gather(*(stop_child(child) for child in run.children if child.name not in ("simulate", "ingress")))
    for child in run.children:
        if child.process is None:
            continue  # a finished simulator, reported when it finished
        code = child.process.returncode
        print(f"  {child.name:<11} exited {code}", flush=True)
        if code != 0:
            run.unclean.append(child.name)


async def run_dev(settings: DevSettings, args: argparse.Namespace, stop: asyncio.Event, run: DevRun) -> None:
    log = vlog.get("dev")
    state: Path = args.state_dir
    metrics_base, recording_port = choose_ports(settings, args)
    handle: BrokerHandle = await asyncio.to_thread(
        start_broker, args.broker, port=listen_port(settings.kafka_bootstrap), state_dir=state / "broker",
        bootstrap=settings.kafka_bootstrap)
    run.broker = handle
    print(f"broker ({handle.kind}) on {handle.bootstrap}", flush=True)
    try:
        settings = settings.model_copy(update={"kafka_bootstrap": handle.bootstrap})
        if handle.kind == "noida":
            # noida-db rewrites a snapshot of all retained data on every change: keep retention short.
            settings = settings.model_copy(update={"topic_retention": 3600.0})
        outcome = await topics.create(settings)
        print(f"topics ready: {len(outcome)} ({settings.topic_prefix}*)", flush=True)
        recording_api = f"http://127.0.0.1:{recording_port}" if recording_port is not None else None
        env = child_env(settings, state, recording_api)
        ports = metrics_ports(metrics_base)
        for name in SERVICES:
            if not available(name):
                print(f"  {name}: not in this build, skipped", flush=True)
                continue
            env_child = dict(env, VOICECALL_METRICS_PORT=str(ports[name])) if name in ports else env
            run.children.append(Child(name, [sys.executable, "-m", "voicecall", name], env_child,
                                      state / "logs" / f"{name}.log"))
        if recording_port is not None and available("simulate"):
            run.children.append(Child("simulate", simulator_argv(settings, args, recording_port), env,
                                      state / "logs" / "simulate.log", oneshot=True))
        by_name = {child.name: child for child in run.children}
        ingress_host = "127.0.0.1" if settings.ingress_host in ("0.0.0.0", "::", "") else settings.ingress_host
        for child in run.children:
            if stop.is_set():
                return
            if child.name == "simulate":  # pushes start only once the ingress listens
                await wait_for_port(ingress_host, settings.ingress_port, 60, by_name.get("ingress"), stop)
            await start_child(child)
        # "running" means listening: a Ctrl-C after the banner finds every service with its signal handlers set
        for child in run.children:
            port = settings.ingress_port if child.name == "ingress" else ports.get(child.name)
            host = ingress_host if child.name == "ingress" else "127.0.0.1"
            if port and not await wait_for_port(host, port, 60, child, stop) and not stop.is_set():
                log.warning("service not listening yet", child=child.name, port=port, log=str(child.log_path))
        print_next_steps(settings, args, run.children, state, handle, recording_api)
        await supervise(run.children, stop, log)
    finally:
        await stop_all(run)
        await asyncio.to_thread(handle.stop)
        print_simulator_summary(run)
        print("dev stopped" + (f" (not cleanly: {', '.join(run.unclean)})" if run.unclean else ""), flush=True)


def print_simulator_summary(run: DevRun) -> None:
    """The simulator's own summary (calls, pushes, re-pushes, answers, what the receiver lost) from its log."""
    for child in run.children:
        if child.name != "simulate":
            continue
        text = this_runs_log(child)
        at = text.rfind("simulated platform: seed")
        if at >= 0:
            print(text[at:].rstrip(), flush=True)


def relative(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it (shorter lines to copy)."""
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path.cwd().resolve())
    return path


def print_next_steps(settings: DevSettings, args: argparse.Namespace, children: list[Child], state: Path,
                     broker: BrokerHandle, recording_api: str | None) -> None:
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    lines = ["", "voicecall dev is running:"]
    broker_log = f"  log {relative(broker.log_path)}" if broker.log_path else ""
    lines.append(f"  {'broker':<11} pid {broker.pid or '-':<7} {broker.kind} Kafka on {broker.bootstrap}{broker_log}")
    for child in children:
        port = child.env.get("VOICECALL_METRICS_PORT")
        if child.name == "ingress":
            where = f"{base}/notify  {base}/metrics"
        elif child.name == "simulate":
            where = f"simulated platform, recording API {recording_api}"
        else:
            where = f"http://127.0.0.1:{port}/metrics"
        lines.append(f"  {child.name:<11} pid {child.process.pid if child.process else '-':<7} {where}"
                     f"  log {child.log_path}")
    env_prefix = []
    if args.bootstrap or os.environ.get("VOICECALL_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP) != DEFAULT_BOOTSTRAP:
        env_prefix.append(f"VOICECALL_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")  # tail's default would miss it
    if settings.topic_prefix != "voicecall.":
        env_prefix.append(f"VOICECALL_TOPIC_PREFIX={settings.topic_prefix}")
    script = relative(Path(sys.executable).parent / "voicecall")
    tail = " ".join([*env_prefix, f"{script} tail billing"])
    lines += [
        f"  pushes:     curl -X POST {base}/notify -d @your-push.json",
        f"  events:     {tail}   (or status.raw, fee.unique, recording.stored, deadletter)",
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
    parser.add_argument("--recording-port", type=int, default=None,
                        help=f"simulator recording API port (default {DEFAULT_RECORDING_PORT}, or a free one "
                             "when that is taken)")
    parser.add_argument("--metrics-base-port", type=int, default=None,
                        help="first consumer /metrics port: dedup, billing, recordings use it and the next two "
                             "(default $VOICECALL_METRICS_PORT, 9100)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(DevSettings, kafka_bootstrap=args.bootstrap, topic_partitions=args.partitions,
                           topic_replication=1)
    vlog.setup(settings.log_level, settings.log_format)
    try:
        config.parse_duration(args.duration)
    except ValueError as error:
        print(f"voicecall dev: --duration: {error}", file=sys.stderr)
        return 2
    if args.rate <= 0:
        print("voicecall dev: --rate must be positive", file=sys.stderr)
        return 2
    problems = check_service_settings(tuple(name for name in (*SERVICES, "simulate")
                                            if name != "simulate" or args.simulate))
    if problems:
        print("voicecall dev: " + "\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    run = DevRun()
    failed: list[str] = []

    async def service(stop: asyncio.Event) -> None:
        try:
            await run_dev(settings, args, stop, run)
        except PortInUse as error:
            failed.append(f"voicecall dev: a port it needs is taken:\n  {error}")
        except BrokerError as error:
            failed.append(f"voicecall dev: the broker did not start: {error}\n(VOICECALL_KAFKA_BOOTSTRAP="
                          f"{settings.kafka_bootstrap} is where it listens; set another host:port, or use "
                          "--broker external for a running cluster)")

    code = lifecycle.run(service, on_force=run.force_stop)
    if failed:
        print(failed[0], file=sys.stderr)
        return 1
    if code == 0 and run.unclean:
        return 1
    return code
