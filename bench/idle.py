"""What a pause costs the next push: ``Parser.parse`` of bench/ingress.py's ~1 KB fee push timed back to back, and
after a pause between pushes (sleeping in ``epoll``, as an event loop waiting for the next push does, or spinning),
side by side with bare's work (``orjson.loads`` of the same body).

A push costs the ingress, and naive, 2-3x more CPU at half rate than at full (bench/RESULTS.md, Ingress). This
measures the cause apart from Kafka and aiohttp: the same work, on the same core, gets slower the longer the core
did something else (or nothing) before it. No broker: a CPU cost.

    .venv/bin/python bench/idle.py [--rounds 5] [--pushes 1000] [--core 0]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import time
from collections.abc import Callable

import orjson

from ingress import push_body  # bench/ingress.py
from voicecall.ingress.parse import Parser
from voicecall.runtime.config import CommonSettings

PAUSES_MS = (0.2, 1.0, 5.0)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def timed(work: Callable[[], object], pushes: int, pause: Callable[[], object] | None) -> float:
    """Median µs of ``work`` over ``pushes`` calls, ``pause`` between them."""
    samples = []
    for _ in range(pushes):
        start = time.perf_counter_ns()
        work()
        samples.append(time.perf_counter_ns() - start)
        if pause is not None:
            pause()
    return statistics.median(samples) / 1000


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--pushes", type=int, default=1000)
    options.add_argument("--core", type=int, default=0, help="the core to run on (bench/ingress.py's server core)")
    args = options.parse_args()
    os.sched_setaffinity(0, {args.core})
    body = push_body("idle-bench-1")
    parser = Parser(CommonSettings())
    works: dict[str, Callable[[], object]] = {
        "Parser.parse": lambda: parser.parse(body, received="2026-12-03T00:00:00.000Z", push_id="idle-1",
                                             origin={"path": "/notify/fee"}),
        "orjson.loads (bare)": lambda: orjson.loads(body),
    }
    poller = select.epoll()
    pauses: dict[str, Callable[[], object] | None] = {"back to back": None}
    for ms in PAUSES_MS:
        pauses[f"sleep {ms:g} ms"] = lambda s=ms / 1000: poller.poll(s)
        pauses[f"spin {ms:g} ms"] = lambda s=ms / 1000: spin(s)
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):  # every case once per round, so that a busy moment hits all alike
        for work_name, work in works.items():
            for pause_name, pause in pauses.items():
                results.setdefault((work_name, pause_name), []).append(timed(work, args.pushes, pause))
    print(f"{'work':<22}{'between pushes':<16}{'µs (median of rounds)':>23}{'× back to back':>16}   rounds (µs)")
    for (work_name, pause_name), values in results.items():
        base = statistics.median(results[(work_name, "back to back")])
        median = statistics.median(values)
        print(f"{work_name:<22}{pause_name:<16}{median:>23.1f}{median / base:>16.2f}   "
              + " ".join(f"{v:.1f}" for v in values))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
