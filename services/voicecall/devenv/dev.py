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
import sys
from dataclasses import dataclass, field
from pathlib import Path

from voicecall import topics
from voicecall.commands import SERVICES
from voicecall.devenv import plan
from voicecall.devenv.banner import is_default, print_next_steps, print_simulator_summary
from voicecall.devenv.broker import BrokerError, BrokerHandle, cli as broker_cli
from voicecall.devenv.plan import DevSettings, PortInUse
from voicecall.devenv.ports import wait_for_port
from voicecall.devenv.preflight import check_service_settings
from voicecall.runtime import children, config, lifecycle, logging as vlog
from voicecall.runtime.children import EXIT_USAGE, Child

FIRST_TO_STOP = ("simulate", "ingress")  # no new pushes, then the last pushes reach Kafka; the consumers after


@dataclass
class DevRun:
    """What ``voicecall dev`` started; ``force_stop`` is the second-signal path (kill everything now)."""

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
        if child.process is None or (child.oneshot and child.retired):
            continue  # never started, or a finished simulator (reported when it finished)
        code = child.poll()
        print(f"  {child.name:<11} exited {code}", flush=True)
        if code != 0:
            run.unclean.append(child.name)


def refused(child: Child) -> None:
    print(f"voicecall dev: {child.name} stopped at start (exit {EXIT_USAGE}, bad configuration); "
          f"see {child.log_path}:\n{child.log_tail()}", file=sys.stderr, flush=True)


async def run_dev(settings: DevSettings, args: argparse.Namespace, stop: asyncio.Event, run: DevRun) -> None:
    log = vlog.get("dev")
    state: Path = args.state_dir
    metrics_base, recording_port = plan.choose_ports(settings, args)
    name_bootstrap = not is_default(settings, "kafka_bootstrap")  # a plain `voicecall tail` would look elsewhere
    handle = await asyncio.to_thread(broker_cli.start, settings, args.broker, state)
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
        env = plan.child_env(settings, state, recording_api)
        ports = plan.metrics_ports(metrics_base)
        for name in SERVICES:
            env_child = dict(env, VOICECALL_METRICS_PORT=str(ports[name])) if name in ports else env
            run.children.append(Child(name, plan.service_argv(name), env_child, state / "logs" / f"{name}.log"))
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
        print_next_steps(settings, run.children, state, handle, recording_api, name_bootstrap=name_bootstrap)
        await children.supervise(run.children, stop, on_refused=refused)
    finally:
        await stop_all(run)
        await asyncio.to_thread(handle.stop)
        print_simulator_summary(run.children)
        print("dev stopped" + (f" (not cleanly: {', '.join(run.unclean)})" if run.unclean else ""), flush=True)


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
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic in dev (default 3)")
    parser.add_argument("--recording-port", type=int, default=None,
                        help=f"simulator recording API port (default {plan.DEFAULT_RECORDING_PORT}, or a free one "
                             "when that is taken)")
    parser.add_argument("--metrics-base-port", type=int, default=None,
                        help="first consumer /metrics port: dedup, billing, recordings and calls use it and the "
                             "next three (default $VOICECALL_METRICS_PORT, 9100)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(DevSettings, kafka_bootstrap=args.bootstrap, topic_partitions=args.partitions,
                           topic_replication=1)
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
