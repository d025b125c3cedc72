"""What ``voicecall dev`` prints once everything runs (where to look, how to stop) and, at the end, the
simulator's summary."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from voicecall.devenv.broker import BrokerHandle
from voicecall.devenv.plan import DevSettings
from voicecall.runtime import config
from voicecall.runtime.children import Child


def is_default(settings: config.CommonSettings, field: str) -> bool:
    """Whether ``field`` has its default value: what another command, run without settings, would take."""
    return bool(getattr(settings, field) == type(settings).model_fields[field].default)


def relative(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it (shorter lines to copy)."""
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path.cwd().resolve())
    return path


def print_next_steps(settings: DevSettings, children: Sequence[Child], state: Path, broker: BrokerHandle,
                     recording_api: str | None, *, name_bootstrap: bool) -> None:
    """``name_bootstrap``: the broker is not where a plain ``voicecall tail`` looks, so the command says where."""
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    lines = ["", "voicecall dev is running:"]
    broker_log = f"  log {relative(broker.log_path)}" if broker.log_path else ""
    lines.append(f"  {'broker':<11} pid {broker.pid or '-':<7} {broker.kind} Kafka on {broker.bootstrap}{broker_log}")
    for child in children:
        if child.name == "ingress":
            where = f"{base}/notify  {base}/metrics"
        elif child.name == "simulate":
            where = f"simulated platform, recording API {recording_api}"
        else:
            where = f"http://127.0.0.1:{(child.env or {}).get('VOICECALL_METRICS_PORT')}/metrics"
        lines.append(f"  {child.name:<11} pid {child.pid or '-':<7} {where}  log {child.log_path}")
    env_prefix = []
    if name_bootstrap:
        env_prefix.append(f"VOICECALL_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")
    if not is_default(settings, "topic_prefix"):
        env_prefix.append(f"VOICECALL_TOPIC_PREFIX={settings.topic_prefix}")
    script = relative(Path(sys.executable).parent / "voicecall")
    tail = " ".join([*env_prefix, f"{script} tail billing"])
    lines += [
        f"  pushes:     curl -X POST {base}/notify -d @your-push.json",
        f"  events:     {tail}   (or calls, status.raw, fee.unique, recording.stored, deadletter)",
        f"  recordings: {state / 'recordings'}",
        "  stop:       Ctrl-C", "",
    ]
    print("\n".join(lines), flush=True)


def print_simulator_summary(children: Sequence[Child]) -> None:
    """The simulator's own summary (calls, pushes, re-pushes, answers, what the receiver lost) from its log."""
    for child in children:
        if child.name != "simulate":
            continue
        text = child.log_since_start()
        at = text.rfind("simulated platform: seed")
        if at >= 0:
            print(text[at:].rstrip(), flush=True)
