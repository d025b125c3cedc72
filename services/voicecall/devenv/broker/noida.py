"""noida-db: the Kafka-protocol broker binary of the ``noida-db`` wheel (deploy/dev/noida-requirements.txt), the
fallback where Java is absent. It rejects consumer ``session_timeout_ms`` below 6000."""

from __future__ import annotations

import os
import time
from functools import partial
from importlib.resources import files
from pathlib import Path

from voicecall.devenv.broker.handle import BrokerHandle, await_ready, load_ports, save_ports, start_node
from voicecall.devenv.broker.probe import BrokerError
from voicecall.devenv.ports import free_port, port_is_free


def noida_binary() -> Path:
    try:
        root = files("noida_db")
    except ModuleNotFoundError:
        raise BrokerError(
            "noida broker: the noida-db package is not installed "
            "(pip install -r deploy/dev/noida-requirements.txt)"
        ) from None
    name = "noida-db.exe" if os.name == "nt" else "noida-db"
    binary = root.joinpath(name)
    if not binary.is_file():
        raise BrokerError(f"noida broker: binary {name} not found in the noida_db package ({root})")
    path = Path(str(binary))
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def start_noida(*, state_dir: Path, port: int | None, wait_timeout: float) -> BrokerHandle:
    started = time.monotonic()
    binary = noida_binary()
    port = port or load_ports(state_dir).get("port") or free_port()
    if not port_is_free(port):
        raise BrokerError(f"noida broker: port 127.0.0.1:{port} is already in use")
    save_ports(state_dir, {"port": port})
    data_dir = state_dir / "noida-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    console = state_dir / "logs" / "noida.log"
    process = start_node("noida", [str(binary), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port",
                                   str(port), "--data-dir", str(data_dir)], console=console, cwd=state_dir)
    handle = BrokerHandle(kind="noida", bootstrap=f"127.0.0.1:{port}", relaunch=partial(_relaunch, state_dir),
                          state_dir=state_dir, nodes=[process], log_path=console)
    return await_ready(handle, "noida-db", max(1.0, wait_timeout - (time.monotonic() - started)))


def _relaunch(state_dir: Path, port: int, wait_timeout: float) -> BrokerHandle:
    return start_noida(state_dir=state_dir, port=port, wait_timeout=wait_timeout)
