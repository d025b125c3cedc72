"""runtime/children.py with real processes: own process group, one SIGTERM then a kill after the timeout, stop in
order, restarts, the log since the supervisor started a child."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from voicecall.runtime import children
from voicecall.runtime.children import Child
from voicecall.runtime.failures import EXIT_USAGE

# A child that records every SIGTERM it gets, then exits ``code`` after ``linger`` seconds.
POLITE = """
import signal, sys, time
out, code, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def on_term(*_):
    with open(out, "a") as f:
        f.write(f"term {time.monotonic()}\\n")
    time.sleep(linger)
    sys.exit(code)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")


def polite(name: str, tmp_path: Path, code: int = 0, linger: float = 0.0) -> Child:
    return Child(name, [sys.executable, "-c", POLITE, str(tmp_path / f"{name}.terms"), str(code), str(linger)],
                 log_path=tmp_path / f"{name}.log")


def wait_ready(child: Child) -> None:
    assert child.log_path is not None
    deadline = time.monotonic() + 10
    while "ready" not in child.log_since_start():
        assert time.monotonic() < deadline and child.running, child.log_since_start()
        time.sleep(0.02)


def terms(child: Child, tmp_path: Path) -> list[float]:
    path = tmp_path / f"{child.name}.terms"
    return [float(line.split()[1]) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_child_leads_its_own_group_and_gets_exactly_one_sigterm(tmp_path: Path) -> None:
    child = polite("svc", tmp_path, code=0, linger=0.3)
    child.start()
    wait_ready(child)
    assert child.pid is not None and os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert child.stop(timeout=10) == 0
    assert len(terms(child, tmp_path)) == 1
    assert child.stop() == 0  # idempotent: no second signal
    assert len(terms(child, tmp_path)) == 1


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    child = Child("stubborn", [sys.executable, "-c", STUBBORN], log_path=tmp_path / "stubborn.log")
    child.start()
    wait_ready(child)
    started = time.monotonic()
    assert child.stop(timeout=1.0) == -9
    assert 1.0 <= time.monotonic() - started < 5
    assert not child.running


def test_the_log_since_start_leaves_out_earlier_runs(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("an earlier run\n")
    child = Child("svc", [sys.executable, "-c", "print('this run')"], log_path=log)
    child.start()
    assert child.process is not None and child.process.wait(10) == 0
    assert child.log_since_start() == "this run\n"
    child.start()  # a restart appends; both runs of this supervisor count
    assert child.process.wait(10) == 0
    assert child.log_since_start() == "this run\nthis run\n"
    assert child.log_tail(1) == "this run"
    assert log.read_text().startswith("an earlier run\n")


async def test_stop_in_order_waits_for_each_stage(tmp_path: Path) -> None:
    first = polite("first", tmp_path, linger=0.5)
    second, third = polite("second", tmp_path), polite("third", tmp_path)
    for child in (first, second, third):
        child.start()
        wait_ready(child)
    await children.stop_in_order([[first], [second, third]], timeout=10)
    assert [child.poll() for child in (first, second, third)] == [0, 0, 0]
    (t1,), (t2,), (t3,) = terms(first, tmp_path), terms(second, tmp_path), terms(third, tmp_path)
    assert t2 - t1 >= 0.5 and t3 - t1 >= 0.5  # the second stage was signalled after the first had exited


async def test_supervise_restarts_gives_up_and_returns_when_nothing_is_left(tmp_path: Path) -> None:
    crashing = Child("crashing", [sys.executable, "-c", "raise SystemExit(1)"], log_path=tmp_path / "c.log")
    refusing = Child("refusing", [sys.executable, "-c", f"raise SystemExit({EXIT_USAGE})"],
                     log_path=tmp_path / "r.log")
    finished = Child("oneshot", [sys.executable, "-c", "pass"], log_path=tmp_path / "o.log", oneshot=True)
    told: list[str] = []
    for child in (crashing, refusing, finished):
        child.start()
    await asyncio.wait_for(children.supervise([crashing, refusing, finished], asyncio.Event(), restarts=2,
                                              on_refused=lambda child: told.append(child.name)), 30)
    assert (crashing.restarts, crashing.poll(), crashing.retired) == (2, 1, True)
    assert (refusing.restarts, refusing.poll(), told) == (0, EXIT_USAGE, ["refusing"])
    assert (finished.restarts, finished.poll(), finished.retired) == (0, 0, True)


async def test_supervise_returns_on_stop_and_leaves_the_children_running(tmp_path: Path) -> None:
    child = polite("svc", tmp_path)
    child.start()
    stop = asyncio.Event()
    task = asyncio.create_task(children.supervise([child], stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert child.running
    children.kill_all([child])
    assert child.poll() == -9 and terms(child, tmp_path) == []
