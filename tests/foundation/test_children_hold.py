"""runtime/children.py, as `voicecall dev` supervises: a child that exits 0 on a SIGTERM the supervisor did not send is
held (not restarted) until ``resume`` is set; one that crashes is still restarted; pid files follow the process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from voicecall.runtime import children
from voicecall.runtime.children import Child

# Exits 0 on SIGTERM (like every service), 1 on SIGUSR2 (a crash).
SERVICE = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGUSR2, lambda *_: sys.exit(1))
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def service(name: str, tmp_path: Path) -> Child:
    return Child(name, [sys.executable, "-c", SERVICE], log_path=tmp_path / f"{name}.log",
                 pid_file=tmp_path / "pids" / f"{name}.pid")


async def ready_pid(child: Child, runs: int = 1, timeout: float = 10) -> int:
    """The pid in the child's pid file once that process is up: its ``runs``-th start printed "ready"."""
    assert child.pid_file is not None
    deadline = time.monotonic() + timeout
    while True:
        text = child.pid_file.read_text().strip() if child.pid_file.exists() else ""
        if text and int(text) == child.pid and child.running and child.log_since_start().count("ready") >= runs:
            return int(text)
        assert time.monotonic() < deadline, child.log_since_start()
        await asyncio.sleep(0.05)


async def until(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_clean_exit_it_did_not_ask_for_is_held_until_resumed(tmp_path: Path) -> None:
    billing, dedup = service("billing", tmp_path), service("dedup", tmp_path)
    for child in (billing, dedup):
        child.start()
    stop, resume = asyncio.Event(), asyncio.Event()
    told: list[str] = []
    task = asyncio.create_task(children.supervise([billing, dedup], stop, resume=resume,
                                                  on_held=lambda child: told.append(child.name)))
    try:
        first = await ready_pid(billing)
        os.kill(first, signal.SIGTERM)  # what the operator does: from outside, by the pid file
        await until(lambda: billing.held)
        assert told == ["billing"] and billing.poll() == 0 and billing.restarts == 0
        assert not billing.pid_file.exists()  # type: ignore[union-attr]  # no stale pid to signal
        await asyncio.sleep(2.5)  # a couple of supervision rounds: still not restarted
        assert not billing.running and billing.held and dedup.running

        dedup_pid = await ready_pid(dedup)
        os.kill(dedup_pid, signal.SIGUSR2)  # a crash is still restarted at once
        await until(lambda: dedup.restarts == 1 and dedup.running)
        assert not dedup.held and told == ["billing"]
        await ready_pid(dedup, runs=2)

        resume.set()  # SIGUSR1 to voicecall dev
        await until(lambda: billing.running)
        second = await ready_pid(billing, runs=2)
        assert second != first and not billing.held and billing.restarts == 0 and not resume.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await children.stop_in_order([[billing, dedup]], timeout=10)
    assert [billing.poll(), dedup.poll()] == [0, 0]
    assert not list((tmp_path / "pids").iterdir())


async def test_without_resume_a_clean_exit_is_restarted_as_before(tmp_path: Path) -> None:
    worker = service("worker", tmp_path)
    worker.start()
    stop = asyncio.Event()
    task = asyncio.create_task(children.supervise([worker], stop, restarts=1))
    try:
        os.kill(await ready_pid(worker), signal.SIGTERM)
        await until(lambda: worker.restarts == 1 and worker.running)
        assert not worker.held
        await ready_pid(worker, runs=2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        assert worker.stop(timeout=10) == 0


async def test_a_resume_sent_right_after_the_stop_starts_the_child_once_it_has_exited(tmp_path: Path) -> None:
    # A script sends SIGTERM, resets, and sends SIGUSR1 within the second between two looks at the children: the
    # resume must not be spent before the child is seen exiting.
    billing = service("billing", tmp_path)
    billing.start()
    stop, resume = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(children.supervise([billing], stop, resume=resume))
    try:
        first = await ready_pid(billing)
        await asyncio.sleep(1.2)  # the supervisor has looked at a running child and sleeps now
        os.kill(first, signal.SIGTERM)
        resume.set()  # at once: the supervisor has not seen the exit yet
        await until(lambda: billing.pid not in (None, first), timeout=15)
        second = await ready_pid(billing)
        assert second != first and not billing.held
    finally:
        stop.set()
        await task
        billing.stop()
