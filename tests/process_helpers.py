"""Process and port helpers shared by the test packages (a free port itself: ``voicecall.devenv.ports``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
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


async def wait_for_line(log: Path, text: str, count: int, timeout: float = 40.0) -> None:
    """Until ``text`` is in the file ``log`` at least ``count`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (content := log.read_text()).count(text) < count:  # noqa: ASYNC240 - a small local log file
        assert loop.time() < deadline, f"no {text} in time: {content[-2000:]}"
        await asyncio.sleep(0.05)


class Crashing:
    """A ``voicecall <command>`` stage as a subprocess (its output appended to ``log``) that a crash test kills with
    SIGKILL at random moments and starts again."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.process: asyncio.subprocess.Process | None = None
        self.kills = 0

    async def start(self) -> None:
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - a local log file, opened once per start
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voicecall", self.command, env=self.env, stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL)

    async def kill_at_random_moments(self, kills: int, rng: random.Random, starting: tuple[float, float],
                                     processing: tuple[float, float]) -> None:
        """``kills`` times: SIGKILL, then start again. Every third kill lands ``starting`` seconds after a start
        (while it starts, joins or restores); the others ``processing`` seconds after its partitions are ready
        (mid-batch, mid-transaction or between transactions)."""
        readies = 0
        while self.kills < kills:
            if self.kills % 3 == 2:
                await asyncio.sleep(rng.uniform(*starting))
            else:
                await wait_for_line(self.log, '"partitions ready"', count=readies + 1)
                await asyncio.sleep(rng.uniform(*processing))
            readies = self.log.read_text().count('"partitions ready"')
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
            self.kills += 1
            await self.start()

    async def stop(self) -> int | None:
        """SIGTERM and its exit status (None when it was not running)."""
        if self.process is None or self.process.returncode is not None:
            return None
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), 60)
