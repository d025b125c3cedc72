"""A running development broker, and what every launcher shares: its saved ports, its start, its readiness."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from voicecall.devenv.broker.probe import BrokerError, wait_for_kafka
from voicecall.runtime import config
from voicecall.runtime.children import Child, read_log

LOG_TAIL_LINES = 40

# Starts the same broker again on its state: (port, wait_timeout) → a fresh handle.
Relaunch = Callable[[int, float], "BrokerHandle"]


class BrokerHandle:
    """A running broker: one process per node (none for an external cluster). ``stop()`` is idempotent;
    ``restart()`` starts it again on the same state and port."""

    def __init__(self, *, kind: str, bootstrap: str, relaunch: Relaunch | None, state_dir: Path | None = None,
                 nodes: Sequence[Child] = (), log_path: Path | None = None,
                 console_path: Path | None = None) -> None:
        self.kind = kind
        self.bootstrap = bootstrap
        self.state_dir = state_dir
        self.nodes = list(nodes)
        self.log_path = log_path
        self.console_path = console_path
        self.fallback: str | None = None  # why "auto" chose noida-db over Apache Kafka (maybe Maven's output too)
        self._relaunch = relaunch

    def __repr__(self) -> str:
        return f"BrokerHandle(kind={self.kind!r}, bootstrap={self.bootstrap!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The (first node's) broker process id; ``None`` for an external cluster."""
        return self.nodes[0].pid if self.nodes else None

    @property
    def port(self) -> int:
        return config.parse_bootstrap(self.bootstrap)[0][1]

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM each node's process group, wait up to ``timeout`` seconds, then SIGKILL it. Idempotent."""
        for node in self.nodes:
            node.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for outage tests). ``restart()`` brings it back."""
        for node in self.nodes:
            node.kill()

    def restart(self, *, stop_timeout: float = 20, wait_timeout: float = 90) -> None:
        """Stop (if running) and start the same broker again: same kind, state and port; data is kept."""
        if self._relaunch is None:
            raise BrokerError(f"a {self.kind} broker cannot be restarted")
        self.stop(stop_timeout)
        self.__dict__.update(self._relaunch(self.port, wait_timeout).__dict__)

    def fallback_line(self) -> str | None:
        """Why noida-db, in one line: the first line of the reason and, from a failed Maven run, its last."""
        if not self.fallback:
            return None
        lines = [line.strip() for line in self.fallback.splitlines() if line.strip()]
        return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        for path in (self.console_path, self.log_path):
            text = read_log(path).splitlines()[-lines:] if path is not None else []
            if text:
                parts.append(f"--- last lines of {path}:\n" + "\n".join(text))
        return "\n".join(parts) if parts else "(the broker wrote no log)"


def load_ports(state_dir: Path) -> dict[str, int]:
    """The ports of the previous run on ``state_dir`` (a restart keeps them)."""
    try:
        data = json.loads((state_dir / "broker.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if isinstance(v, int)}


def save_ports(state_dir: Path, ports: dict[str, int]) -> None:
    tmp = state_dir / "broker.json.tmp"
    tmp.write_text(json.dumps(ports, indent=2) + "\n")
    tmp.replace(state_dir / "broker.json")


def start_node(name: str, argv: Sequence[str], *, console: Path, cwd: Path) -> Child:
    """A broker process, its output appended to ``console`` under a line saying when and how it started."""
    console.parent.mkdir(parents=True, exist_ok=True)
    with console.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
    node = Child(name, argv, log_path=console, cwd=cwd)
    node.start()
    return node


def await_ready(handle: BrokerHandle, what: str, timeout: float) -> BrokerHandle:
    """``handle`` once it answers Metadata requests; else it is stopped and the error carries its log."""
    try:
        wait_for_kafka(handle.bootstrap, timeout=timeout, process=handle.nodes[0])
    except BrokerError as exc:
        handle.stop(timeout=10)
        raise BrokerError(f"{what} on {handle.bootstrap} did not come up: {exc}\n{handle.log_tail()}") from None
    return handle
