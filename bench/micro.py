"""The CPU costs behind a few hot-path choices in the code, each measured side by side with the alternative in one
run (no Kafka: these are CPython costs). The ratios go to bench/RESULTS.md, section "Hot-path choices".

    .venv/bin/python bench/micro.py [--rounds 7] [--number 200000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from dataclasses import dataclass
from datetime import UTC, datetime

from voicecall import huawei


@dataclass(slots=True)
class Plain:
    a: int
    b: str
    c: int
    d: str


@dataclass(slots=True, frozen=True)
class Frozen:
    a: int
    b: str
    c: int
    d: str


CANONICAL = "2019-01-24 03:04:49"
DOUBLED = "2019-01-24  03:04:49"  # old platforms: two spaces, so not the fast path


PAIRS: dict[str, tuple[str, object, str, object]] = {
    # name: (project's label, project's callable, alternative's label, alternative's callable)
    "dataclass __init__": ("slots", lambda: Plain(1, "x", 2, "y"), "slots + frozen", lambda: Frozen(1, "x", 2, "y")),
    "UTC from an ISO string": ("fromisoformat(s + '+00:00')", lambda: datetime.fromisoformat(CANONICAL + "+00:00"),
                               "fromisoformat(s).replace(tzinfo=UTC)",
                               lambda: datetime.fromisoformat(CANONICAL).replace(tzinfo=UTC)),
    "huawei.parse_time": ("usual form (fast path)", lambda: huawei.parse_time(CANONICAL),
                          "doubled space (general path)", lambda: huawei.parse_time(DOUBLED)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    for name, (ours, ours_fn, other, other_fn) in PAIRS.items():
        ratios, ours_ns, other_ns = [], [], []
        for _ in range(args.rounds):  # alternate, so that a busy moment hits both
            a = timeit.timeit(ours_fn, number=args.number) / args.number * 1e9  # type: ignore[arg-type]
            b = timeit.timeit(other_fn, number=args.number) / args.number * 1e9  # type: ignore[arg-type]
            ours_ns.append(a)
            other_ns.append(b)
            ratios.append(b / a)
        print(f"{name}: {ours} {statistics.median(ours_ns):.0f} ns, {other} {statistics.median(other_ns):.0f} ns; "
              f"alternative / ours: median {statistics.median(ratios):.1f}x "
              f"(rounds {min(ratios):.1f}-{max(ratios):.1f})")


if __name__ == "__main__":
    main()
