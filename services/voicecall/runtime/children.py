"""Child processes of a supervisor: start, stop in order, supervise, read back the log.

Used by ``voicecall ingress --workers N`` (production), by ``voicecall dev`` and by the development brokers, so it
lives in the runtime, which every one of them may import.

Each child leads its own process group: a terminal's Ctrl-C reaches only the supervisor, which then gives each
child exactly one SIGTERM (a second signal would make a service skip its drain) and a SIGKILL only after a timeout.

A child may have a pid file (written at each start, removed once it exited), so that an operator can signal it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecall.runtime import logging as vlog
from voicecall.runtime.failures import EXIT_USAGE

STOP_TIMEOUT = 30.0
RESUME_GRACE = 10.0  # seconds a SIGUSR1 (resume) waits for a child that is still on its way out


@dataclass(eq=False)
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None: this process's environment
    log_path: Path | None = None  # stdout and stderr are appended here; None: they are this process's own
    cwd: Path | None = None
    oneshot: bool = False  # finishes by itself (the simulator's --duration): it is not started again
    pid_file: Path | None = None  # holds the running child's pid
    restarts: int = 0
    retired: bool = False  # the supervisor will not start it again
    held: bool = False  # stopped cleanly by someone else: not started again until asked (see supervise)
    log_start: int | None = None  # size of the log before the first start: what follows is this supervisor's
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        argv, env, cwd = list(self.argv), None if self.env is None else dict(self.env), self.cwd
        if self.log_path is None:
            self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:  # the child keeps its own descriptor
                if self.log_start is None:
                    self.log_start = log.tell()
                self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        _started.add(self)
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self.process.pid}\n")

    def forget_pid(self) -> None:
        """Remove the pid file of a child that exited (its pid may be reused by anything after it is reaped)."""
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The exit status once it exited (reaping it), else ``None``; ``None`` as well before it started."""
        return self.process.poll() if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        """``signum`` to the child's process group, while the child is not reaped (its pid may be reused after)."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL now (a crash, or the second Ctrl-C) and reap it."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        self.forget_pid()
        _started.discard(self)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """One SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL. Idempotent; returns the exit status."""
        process = self.process
        if process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.forget_pid()
        _started.discard(self)
        return process.returncode

    async def stop_async(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return await asyncio.to_thread(self.stop, timeout)

    def log_since_start(self) -> str:
        """What the child wrote to its (appended) log since this supervisor first started it."""
        if self.log_path is None:
            return ""
        return read_log(self.log_path, self.log_start or 0)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


def read_log(path: Path, start: int = 0) -> str:
    try:
        with path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


async def stop_in_order(stages: Iterable[Iterable[Child]], timeout: float = STOP_TIMEOUT) -> None:
    """Each stage once the one before has exited; the children of one stage at the same time."""
    for stage in stages:
        await asyncio.gather(*(child.stop_async(timeout) for child in stage))


def kill_all(children: Iterable[Child]) -> None:
    for child in children:
        child.kill()


async def supervise(children: Sequence[Child], stop: asyncio.Event, *, restarts: int = 5,
                    on_refused: Callable[[Child], None] | None = None, resume: asyncio.Event | None = None,
                    on_held: Callable[[Child], None] | None = None) -> None:
    """Until ``stop`` is set or no child is left to run: start again a child that died on its own, at most
    ``restarts`` times (like a Deployment would). Not started again: a ``oneshot`` child that finished, and one
    that refused its configuration (exit 2; ``on_refused`` is told).

    With ``resume`` (``voicecall dev``): a child that exits 0 was stopped on purpose by someone else (every service
    exits 0 only after a stop signal, and this supervisor sends none while it runs) — an operator about to rewind
    its consumer group. It is *held*, not restarted (``on_held`` is told), until ``resume`` is set, which starts
    every held child again — also one seen exiting up to :data:`RESUME_GRACE` seconds after ``resume`` was set (a
    script's SIGTERM, reset and SIGUSR1 can all come within the second between two looks at the children)."""
    log = vlog.get("children")
    resume_until = 0.0  # a resume asked for before the stopped child was seen exiting waits for it this long
    while not stop.is_set():
        for child in children:
            code = child.poll()
            if code is None or child.retired or child.held:
                continue
            child.forget_pid()
            if child.oneshot:
                log.info("child finished", child=child.name, code=code, log=str(child.log_path))
                child.retired = True
            elif code == EXIT_USAGE:
                log.error("child refused its configuration, not restarting", child=child.name,
                          log=str(child.log_path))
                child.retired = True
                if on_refused is not None:
                    on_refused(child)
            elif code == 0 and resume is not None:
                log.warning("child stopped cleanly by someone else: held until asked to start again",
                            child=child.name, log=str(child.log_path))
                child.held = True
                if on_held is not None:
                    on_held(child)
            elif child.restarts < restarts:
                child.restarts += 1
                log.warning("child exited, restarting", child=child.name, code=code, log=str(child.log_path))
                child.start()
            else:
                log.error("child exited, not restarting", child=child.name, code=code, restarts=child.restarts,
                          log=str(child.log_path))
                child.retired = True
        if resume is not None and resume.is_set():
            resume.clear()
            resume_until = time.monotonic() + RESUME_GRACE
        if resume_until and any(child.held for child in children):
            resume_until = 0.0
            _resume(children, log)
        elif resume_until and time.monotonic() > resume_until:
            resume_until = 0.0
            log.info("asked to start held children again: none is held")
        if all(child.retired for child in children):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _resume(children: Sequence[Child], log: Any) -> None:
    for child in [child for child in children if child.held]:
        child.held = False
        log.info("starting held child again", child=child.name)
        child.start()


_started: weakref.WeakSet[Child] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """A supervisor that exits without stopping its children does not leave them running."""
    for child in list(_started):
        with contextlib.suppress(Exception):
            child.stop(timeout=10)
