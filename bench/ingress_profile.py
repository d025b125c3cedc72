"""Where the ingress's CPU goes under load: py-spy samples ``voicecall ingress`` while ``wrk`` drives it.

Starts its own Apache Kafka broker and one server pinned to core 0: the ingress (``--services`` picks another
checkout's code, for a before/after) or ``--server naive`` (bench/ingress_baselines.py), warms it, then records it
with ``py-spy record --format raw`` (``--native`` on request) for the length of one ``wrk -c64`` run of
bench/ingress.py's ~1 KB fee push from core 1. Prints the top frames by own time and by total time (share of
samples) and the run's req/s and CPU per push. ``--kafka down`` measures the spool path instead: the broker is
stopped after the ingress has started, so every push goes to the spool. ``--signed``: every push X-AKSK-signed
(bench/ingress.py's app, each verified ``valid``), to see where verification's cost on the whole path goes.

    .venv/bin/python bench/ingress_profile.py [--services <checkout>/services] [--duration 20] [--native]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ingress import (  # bench/ingress.py
    APP_KEY,
    APP_SECRET,
    run_wrk,
    signatures,
    start_server,
    stop_server,
    wait_kafka,
    wait_port,
    warm,
)
from voicecall import topics
from voicecall.devenv.broker import start_broker
from voicecall.devenv.ports import free_port

HERE = Path(__file__).resolve().parent


def frames(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Own and total samples per frame from py-spy's collapsed stacks (``a;b;c count`` per line)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        names = [_short(f) for f in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    return own, total, samples


def _short(frame: str) -> str:
    """``handle (voicecall/ingress/handlers.py:101)`` → ``handle (ingress/handlers.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if path else name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=Path, default=HERE.parent / "services")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument("--kafka", choices=("up", "down"), default="up")
    parser.add_argument("--server", choices=("ingress", "naive"), default="ingress",
                        help="naive: bench/ingress_baselines.py's aiohttp + aiokafka handler, to compare frames")
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profile here")
    parser.add_argument("--signed", action="store_true", help="X-AKSK-signed pushes (the ingress only)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingress-profile-"))
    broker = start_broker("apache", state_dir=work / "broker")
    proc = None
    try:
        settings = topics.TopicSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="bench.", topic_partitions=6,
                                        topic_replication=1, topic_min_insync=1)
        asyncio.run(topics.create(settings))
        env = dict(os.environ, PYTHONPATH=str(args.services.resolve()), VOICECALL_KAFKA_BOOTSTRAP=broker.bootstrap,
                   VOICECALL_TOPIC_PREFIX="bench.", VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_LOG_FORMAT="json",
                   VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool"))
        if args.signed:
            env.update(VOICECALL_HUAWEI_APP_KEY=APP_KEY, VOICECALL_HUAWEI_APP_SECRET=APP_SECRET)
        port = free_port()
        argv = ([sys.executable, "-m", "voicecall", "ingress", "--port", str(port)] if args.server == "ingress" else
                [sys.executable, str(HERE / "ingress_baselines.py"), "naive", str(port), broker.bootstrap,
                 "bench.fee.raw"])
        proc = start_server(argv, "0", env, work / "server.log")
        wait_port(port)
        if args.server == "ingress":
            wait_kafka(port)
        url = f"http://127.0.0.1:{port}/notify/fee"
        warm(url)
        if args.kafka == "down":
            broker.stop()
            warm(url)
        raw = args.out or work / "profile.raw"
        spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        spy = subprocess.Popen([spy_bin, "record", "--pid", str(proc.pid), "--format", "raw", "--output", str(raw),
                                "--duration", str(args.duration + 1), "--rate", "250", "--nonblocking",
                                *(["--native"] if args.native else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        extra = signatures(url, work / "signatures.txt", args.duration) if args.signed else None
        result = run_wrk("ingress", url, args.duration, 64, pid=proc.pid, extra_env=extra)
        spy.wait(60)
    finally:
        if proc is not None:
            stop_server(proc)
        broker.stop()
    print(f"{result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}, "
          f"{result.cpu_us:.0f} µs CPU/push, load average {os.getloadavg()[0]:.1f}")
    own, total, samples = frames(raw)
    for title, counter in (("own time", own), ("total time", total)):
        print(f"\ntop frames by {title} ({samples} samples)")
        for name, n in counter.most_common(args.top):
            print(f"  {100 * n / samples:5.1f} %  {name}")
    print(f"\nraw profile: {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
