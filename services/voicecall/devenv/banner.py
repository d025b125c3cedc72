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


EXAMPLE = "fee-push-callback-recorded.json"
INLINE_EXAMPLE = ('{"eventType":"callout","statusInfo":{"sessionId":"example-1@callenabler245.huaweicaas.com",'
                  '"timestamp":"2026-11-23 10:00:00"}}')


def find_examples() -> Path | None:
    """examples/ of the source tree (where `make run` runs), if there is one."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / "examples" / EXAMPLE).is_file():
            return base / "examples"
    return None


def next_steps(settings: DevSettings, children: Sequence[Child], state: Path, broker: BrokerHandle,
               recording_api: str | None, *, name_bootstrap: bool) -> str:
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
    # The token is never printed: the shell fills it in from the variable the user set.
    token = any((child.env or {}).get("VOICECALL_INGRESS_PATH_TOKEN") for child in children if child.name == "ingress")
    notify = f"{base}/notify/$VOICECALL_INGRESS_PATH_TOKEN" if token else f"{base}/notify"
    examples = find_examples()
    if examples is not None:
        push = f"--data-binary @{relative(examples / EXAMPLE)}"
        more = f"             (more in {relative(examples)}/: a status push, a voice notification CDR, a bad body)"
    else:
        push = f"--data-binary '{INLINE_EXAMPLE}'"
        more = ""
    lines += [
        f"  pushes:     curl -sS {notify} {push}",
        *([more] if more else []),
        f"  events:     {tail}   (or calls, status.raw, fee.unique, recording.stored, deadletter)",
        f"  recordings: {state / 'recordings'}",
        f"  replay:     kill -TERM $(cat {relative(state / 'pids')}/billing.pid) stops a service and leaves it stopped "
        f"(reset its group meanwhile); kill -USR1 $(cat {relative(state / 'pids')}/dev.pid) starts it again",
        "  stop:       Ctrl-C", "",
    ]
    return "\n".join(lines)


def simulator_summary(children: Sequence[Child]) -> str | None:
    """The simulator's own summary (calls, pushes, re-pushes, answers, what the receiver lost) from its log."""
    for child in children:
        if child.name != "simulate":
            continue
        text = child.log_since_start()
        at = text.rfind("simulated platform: seed")
        if at >= 0:
            return text[at:].rstrip()
    return None
