"""Ports on this machine: a free one, whether one is free, waiting until something listens on one."""

from __future__ import annotations

import asyncio
import socket

from voicecall.runtime.children import Child


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


async def wait_for_port(host: str, port: int, timeout: float = 30.0, child: Child | None = None,
                        stop: asyncio.Event | None = None) -> bool:
    """Until something listens on ``host:port`` (False on timeout, when ``child`` exited or ``stop`` is set)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if child is not None and child.poll() is not None:
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
