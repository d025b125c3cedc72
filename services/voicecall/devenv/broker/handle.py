"""A running development broker, and what every launcher shares: its saved ports, its start, its readiness."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from voicecall.devenv.broker.probe import BrokerError, active_controller, wait_for_kafka
from voicecall.runtime import config
from voicecall.runtime.children import Child, read_log

LOG_TAIL_LINES = 40

# Starts the same broker again on its state: (port, wait_timeout) → a fresh handle.
Relaunch = Callable[[int, float], "BrokerHandle"]


class BrokerHandle:
    """A running broker: one process per node (none for an external cluster). ``stop()`` is idempotent;
    ``restart()`` starts it again on the same state and port. Node ``i`` (1-based, the Kafka node id) is
    ``nodes[i - 1]`` listening on the ``i``-th address of ``bootstrap``; ``kill_node``/``start_nodes`` crash and
    bring back nodes of a cluster."""

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
        """SIGTERM every node's process group at once, wait up to ``timeout`` seconds, then SIGKILL. Idempotent.
        (One after the other, the last nodes of a cluster would wait for a quorum that is already gone.)"""
        for node in self.nodes:
            node.signal(signal.SIGTERM)
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

    def address(self, node_id: int) -> tuple[str, int]:
        """The client address of node ``node_id``."""
        return config.parse_bootstrap(self.bootstrap)[node_id - 1]

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (a crash); the others keep running."""
        self.nodes[node_id - 1].kill()

    def start_nodes(self, node_ids: Sequence[int], wait_timeout: float = 90) -> None:
        """Start stopped or killed nodes again on their state (all at once); returns once each answers Metadata
        requests listing every running node."""
        started = [i for i in node_ids if not self.nodes[i - 1].running]
        for node_id in started:
            self.nodes[node_id - 1].start()
        deadline = time.monotonic() + wait_timeout
        for node_id in started:
            host, port = self.address(node_id)
            wait_for_kafka(f"{host}:{port}", timeout=max(1.0, deadline - time.monotonic()),
                           processes=[self.nodes[node_id - 1]], brokers=sum(n.running for n in self.nodes))

    def active_controller(self) -> int:
        """The node id of the active KRaft controller, asked of the first running node."""
        errors = []
        for node_id, node in enumerate(self.nodes, start=1):
            if node.running:
                try:
                    return active_controller(*self.address(node_id))
                except (OSError, BrokerError) as error:
                    errors.append(f"node {node_id}: {error}")
        raise BrokerError("no node named the active controller: " + "; ".join(errors or ["none running"]))

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
        wait_for_kafka(handle.bootstrap, timeout=timeout, processes=handle.nodes, brokers=len(handle.nodes))
    except BrokerError as exc:
        handle.stop(timeout=10)
        raise BrokerError(f"{what} on {handle.bootstrap} did not come up: {exc}\n{handle.log_tail()}") from None
    return handle
