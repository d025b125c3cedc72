"""``voicecall dev``: the embedded default — broker, topics and every service, optionally fed by the simulator.

Each service runs as its own child process (exactly as in production, one ``voicecall <service>`` per process), with
its log in ``.state/logs/<service>.log``. Children run in their own process groups, so a Ctrl-C on the terminal
reaches ``voicecall dev`` alone; it then stops the simulator, the ingress and the consumers in that order with one
SIGTERM each (so they flush and commit), then the broker, prints each child's exit status and exits 0 when every
service stopped cleanly. A second Ctrl-C kills everything at once.

A service stopped by someone else's SIGTERM (exit 0) is left stopped — the replay procedure stops a stage, rewinds
its consumer group, then wants it back — and SIGUSR1 to ``voicecall dev`` starts it again. The pids to signal are
in ``<state>/pids/`` (``dev.pid`` and one file per running service).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from voicecall import topics
from voicecall.commands import SERVICES
from voicecall.devenv import plan
from voicecall.devenv.banner import is_default, next_steps, simulator_summary
from voicecall.devenv.broker import BrokerError, BrokerHandle, cli as broker_cli
from voicecall.devenv.plan import DevSettings
from voicecall.devenv.ports import wait_for_port
from voicecall.devenv.preflight import check_service_settings
from voicecall.runtime import children, config, lifecycle, logging as vlog
from voicecall.runtime.children import Child
from voicecall.runtime.failures import EXIT_USAGE, Refusal

FIRST_TO_STOP = ("simulate", "ingress")  # no new pushes, then the last pushes reach Kafka; the consumers after


class Report:
    """What ``voicecall dev`` says on stdout, also appended to ``<state>/logs/dev.log``: the shutdown report (each
    exit status, the simulator's summary) survives a terminal or a ``| tee`` that went away."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, text: str) -> None:
        print(text, flush=True)  # never raises: stdout is protected by the entry point
        self.note(text)

    def note(self, text: str) -> None:
        """``text`` in the log only."""
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log:
                log.write(text + "\n")


@dataclass
class DevRun:
    """What ``voicecall dev`` started; ``force_stop`` is the second-signal path (kill everything now)."""

    say: Report
    children: list[Child] = field(default_factory=list)
    broker: BrokerHandle | None = None
    unclean: list[str] = field(default_factory=list)

    def force_stop(self) -> None:
        children.kill_all(self.children)
        if self.broker is not None:
            self.broker.kill()


async def stop_all(run: DevRun) -> None:
    """The simulator, the ingress, then the consumers; one SIGTERM each, so each drains, flushes and commits
    against a live broker. Prints each one's exit status."""
    by_name = {child.name: child for child in run.children}
    await children.stop_in_order([*([by_name[name]] for name in FIRST_TO_STOP if name in by_name),
                                  [child for child in run.children if child.name not in FIRST_TO_STOP]])
    for child in run.children:
        if child.process is None:
            continue  # never started
        code = child.poll()
        finished = " (finished by itself)" if child.oneshot and child.retired else ""
        run.say(f"  {child.name:<11} exited {code}{finished}")
        if code != 0 and not finished:
            run.unclean.append(child.name)


async def stop_broker(run: DevRun) -> None:
    """The broker last, once every service has committed; its exit status too."""
    handle = run.broker
    if handle is None:
        return
    await asyncio.to_thread(handle.stop)
    if not handle.nodes:
        run.say(f"  {'broker':<11} external ({handle.bootstrap}), left running")
    for node in handle.nodes:
        code = node.poll()
        # A JVM stopped by SIGTERM runs its shutdown hooks and then reports the signal: 143 is a clean stop.
        clean = code in (0, 128 + signal.SIGTERM)
        run.say(f"  {'broker':<11} exited {code}" + ("" if code == 0 else " (stopped by SIGTERM)" if clean else ""))
        if not clean:
            run.unclean.append("broker")


def held(pids: Path) -> Callable[[Child], None]:
    def tell(child: Child) -> None:
        print(f"voicecall dev: {child.name} stopped (exit 0, not by voicecall dev): left stopped until "
              f"kill -USR1 $(cat {pids / 'dev.pid'})", flush=True)
    return tell


@contextlib.contextmanager
def resume_on_sigusr1(pids: Path) -> Iterator[asyncio.Event]:
    """An event SIGUSR1 sets (start the held services again), and ``<pids>/dev.pid`` to send it to."""
    resume = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, resume.set)
    pids.mkdir(parents=True, exist_ok=True)
    (pids / "dev.pid").write_text(f"{os.getpid()}\n")
    try:
        yield resume
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        (pids / "dev.pid").unlink(missing_ok=True)


def refused(child: Child) -> None:
    print(f"voicecall dev: {child.name} stopped at start (exit {EXIT_USAGE}, bad configuration); "
          f"see {child.log_path}:\n{child.log_tail()}", file=sys.stderr, flush=True)


async def run_dev(settings: DevSettings, args: argparse.Namespace, stop: asyncio.Event, run: DevRun) -> None:
    log = vlog.get("dev")
    state: Path = args.state_dir
    metrics_base, recording_port = plan.choose_ports(settings, args)
    name_bootstrap = not is_default(settings, "kafka_bootstrap")  # a plain `voicecall tail` would look elsewhere
    try:
        handle = await asyncio.to_thread(broker_cli.start, settings, args.broker, state, args.nodes)
    except BrokerError as error:
        raise Refusal(f"the broker did not start: {error}\n(VOICECALL_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} "
                      "is where it listens; set another host:port, or use --broker external for a running "
                      "cluster)") from None
    run.broker = handle
    if handle.fallback:
        run.say(f"broker: noida-db instead of Apache Kafka: {handle.fallback_line()}")
    run.say(f"broker ({handle.kind}) on {handle.bootstrap}")
    try:
        settings = settings.model_copy(update={"kafka_bootstrap": handle.bootstrap})
        if handle.kind == "noida":
            # noida-db rewrites a snapshot of all retained data on every change: keep retention short.
            settings = settings.model_copy(update={"topic_retention": 3600.0})
        outcome = await topics.create(settings)
        run.say(f"topics ready: {len(outcome)} ({settings.topic_prefix}*)")
        recording_api = f"http://127.0.0.1:{recording_port}" if recording_port is not None else None
        env = plan.child_env(settings, state, recording_api)
        ports = plan.metrics_ports(metrics_base)
        for name in SERVICES:
            env_child = dict(env, VOICECALL_METRICS_PORT=str(ports[name])) if name in ports else env
            run.children.append(Child(name, plan.service_argv(name), env_child, state / "logs" / f"{name}.log",
                                      pid_file=state / "pids" / f"{name}.pid"))
        if recording_port is not None:
            run.children.append(Child("simulate", plan.simulator_argv(settings, args, recording_port), env,
                                      state / "logs" / "simulate.log", oneshot=True))
        by_name = {child.name: child for child in run.children}
        ingress_host = "127.0.0.1" if settings.ingress_host in ("0.0.0.0", "::", "") else settings.ingress_host
        for child in run.children:
            if stop.is_set():
                return
            if child.name == "simulate":  # pushes start only once the ingress listens
                await wait_for_port(ingress_host, settings.ingress_port, 60, by_name.get("ingress"), stop)
            child.start()
        # "running" means listening: a Ctrl-C after the banner finds every service with its signal handlers set
        for child in run.children:
            port = settings.ingress_port if child.name == "ingress" else ports.get(child.name)
            host = ingress_host if child.name == "ingress" else "127.0.0.1"
            if port and not await wait_for_port(host, port, 60, child, stop) and not stop.is_set():
                log.warning("service not listening yet", child=child.name, port=port, log=str(child.log_path))
        with resume_on_sigusr1(state / "pids") as resume:
            run.say(next_steps(settings, run.children, state, handle, recording_api, name_bootstrap=name_bootstrap))
            await children.supervise(run.children, stop, on_refused=refused, resume=resume,
                                     on_held=held(state / "pids"))
    finally:
        run.say("stopping: the simulator, the ingress, the consumers, then the broker")
        await stop_all(run)
        await stop_broker(run)
        summary = simulator_summary(run.children)
        if summary:
            run.say(summary)
        run.say("dev stopped" + (f" (not cleanly: {', '.join(run.unclean)})" if run.unclean else ""))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    broker_cli.add_broker_arguments(parser)
    parser.add_argument("--simulate", action="store_true",
                        help="also run the platform simulator: pushes to the ingress, recording API for the services")
    parser.add_argument("--rate", type=float, default=2.0, help="simulated calls per second (default 2)")
    parser.add_argument("--duration", default="0",
                        help="how long the simulator runs, e.g. 10m; 0 = until stopped (default)")
    parser.add_argument("--lost-cdr-share", type=float, default=0.02,
                        help="with --simulate: share of calls whose CDR never arrives; the calls stage flags them "
                             f"missing after VOICECALL_CALLS_CDR_GRACE (default here {plan.DEV_CDR_GRACE}) "
                             "(default 0.02)")
    parser.add_argument("--partitions", type=int, help="partitions per topic in dev (VOICECALL_TOPIC_PARTITIONS, "
                                                       "default 3)")
    parser.add_argument("--recording-port", type=int, default=None,
                        help=f"simulator recording API port (default {plan.DEFAULT_RECORDING_PORT}, or a free one "
                             "when that is taken)")
    parser.add_argument("--metrics-base-port", type=int, default=None,
                        help="first consumer /metrics port: dedup, billing, recordings and calls use it and the "
                             "next three (default $VOICECALL_METRICS_PORT, 9100)")


def main(args: argparse.Namespace) -> int:
    # replication as configured (3), capped at the broker count by `topics.create`: 1 on one node, 3 on --nodes 3
    settings = config.load(DevSettings, kafka_bootstrap=args.bootstrap, topic_partitions=args.partitions)
    vlog.setup(settings.log_level, settings.log_format)
    try:
        config.parse_duration(args.duration)
    except ValueError as error:
        print(f"voicecall dev: --duration: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.rate <= 0:
        print("voicecall dev: --rate must be positive", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.lost_cdr_share <= 1:
        print("voicecall dev: --lost-cdr-share is between 0 and 1", file=sys.stderr)
        return EXIT_USAGE
    problems = check_service_settings([*SERVICES, *(["simulate"] if args.simulate else [])])
    if problems:
        print("voicecall dev: " + "\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    run = DevRun(Report(args.state_dir / "logs" / "dev.log"))
    run.say.note(f"--- voicecall dev, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    code = lifecycle.run(lambda stop: run_dev(settings, args, stop, run), on_force=run.force_stop)
    if code == 0 and run.unclean:
        return 1
    return code
