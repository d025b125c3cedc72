"""What ``voicecall dev`` runs: its settings, the ports it needs (checked before anything starts), and each child's
environment and command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import Field

from voicecall import topics
from voicecall.commands import SERVICES
from voicecall.devenv.broker.config import BrokerSettings
from voicecall.devenv.ports import free_port, port_is_free
from voicecall.runtime.failures import Refusal

CONSUMERS = tuple(name for name in SERVICES if name != "ingress")  # /metrics on base, base+1, …
DEFAULT_RECORDING_PORT = 18080
DEV_APP_KEY = "dev-app-key"
DEV_APP_SECRET = "dev-app-secret"  # the simulator's recording API checks signatures made with it
# --simulate: calls whose CDR the simulator withholds show as missing after this (simulator and calls stage read
# the same variable), unless the user set one; and some status pushes arrive late or twice.
DEV_CDR_GRACE = "10m"
DEV_FAULTS = ("--out-of-order-share", "0.05", "--duplicate-share", "0.02")


class DevSettings(BrokerSettings, topics.TopicSettings):
    topic_partitions: int = Field(3, ge=1, le=10_000, description="partitions per topic (--partitions)")
    ingress_host: str = Field("127.0.0.1", description="the ingress's listen address (dev: loopback only)")
    ingress_port: int = Field(8080, ge=0, le=65535, description="the ingress's port")


class PortInUse(Refusal):
    """Every port ``voicecall dev`` needs and cannot have, each with the setting that chose it."""


def metrics_ports(base: int) -> dict[str, int]:
    return {name: base + offset for offset, name in enumerate(CONSUMERS)}


def choose_ports(settings: DevSettings, args: argparse.Namespace) -> tuple[int, int | None]:
    """Check the ports the services will listen on before anything starts; returns (metrics base, recording API
    port). A taken port stops ``voicecall dev`` with a message naming the setting to change; only the recording
    API's default port (an internal detail of --simulate) is replaced by a free one. Every taken port is reported
    at once, the broker's included."""
    problems = []
    broker_problem = settings.port_problem(args.broker)
    if broker_problem:
        problems.append(broker_problem)
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
        raise PortInUse("ports it needs are taken:\n  " + "\n  ".join(problems) if len(problems) > 1
                        else problems[0])
    return base, recording_port


def child_env(settings: DevSettings, state: Path, recording_api: str | None) -> dict[str, str]:
    """This process's environment (the user's own VOICECALL_* settings reach every service) with dev's choices."""
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
        env.setdefault("VOICECALL_CALLS_CDR_GRACE", DEV_CDR_GRACE)
    return env


def service_argv(name: str) -> list[str]:
    return [sys.executable, "-m", "voicecall", name]


def simulator_argv(settings: DevSettings, args: argparse.Namespace, recording_port: int) -> list[str]:
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    return [*service_argv("simulate"),
            "--status-url", f"{base}/notify/status", "--fee-url", f"{base}/notify/fee",
            "--serve-recordings", f"127.0.0.1:{recording_port}",
            "--rate", str(args.rate), "--duration", str(args.duration),
            "--lost-cdr-share", str(args.lost_cdr_share), *DEV_FAULTS]
