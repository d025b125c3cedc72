"""Process and port helpers shared by the test packages (a free port itself: ``voicecall.devenv.ports``)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from voicecall.devenv.ports import free_port, port_is_free


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: a zombie (exited, not yet reaped by its parent) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something listens on for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def free_port_run(count: int) -> int:
    """A port such that it and the next ``count - 1`` are free right now."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65535 and all(port_is_free(base + i) for i in range(count)):
            return base
    raise AssertionError("no run of free ports")
