"""A/B of two versions of ``voicecall ingress`` in one run: this checkout against another one's ``services/``.

Both ingresses run at once against one Apache Kafka broker started here, each pinned to core 0 (each with its own
topic prefix and spool); ``wrk`` on core 1 drives them in alternating rounds with bench/ingress.py's 64 connections
of ~1.1 KB fee pushes. Then the pure core (``Parser.parse``) of each version on the same push, best of 7, alternating
processes. Prints per-round ratios (this/baseline) of req/s and of server CPU per push (the steadier of the two on a
shared machine), their medians, and how many rounds met the goal: CPU per push at most 5 % above the baseline's.

    git worktree add /tmp/baseline main
    .venv/bin/python bench/ingress_ab.py --baseline /tmp/baseline/services [--rounds 12] [--duration 10]

``--traced [--ratio R]``: this checkout with tracing on (a share R of the pushes sampled, default all; spans
exported over OTLP/HTTP to a sink in this process that answers 200 and keeps nothing); use ``--baseline services``
for the cost of tracing alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ingress import (  # bench/ingress.py
    Result,
    push_body,
    run_wrk,
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
GOAL = 1.05  # CPU per push, this / baseline

PARSE = """
import sys, time
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.parse import Parser
body = sys.argv[1].encode()
parser = Parser(IngressSettings())
origin = {"path": "/notify/fee", "client": "127.0.0.1"}
def rounds(n=20000):
    started = time.process_time()
    for _ in range(n):
        parser.parse(body, received="2026-01-01T00:00:00.000Z", push_id="abcdef012345-1", origin=origin)
    return (time.process_time() - started) / n * 1e6
print(min(rounds() for _ in range(7)))
"""


def parse_us(services: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(services))
    body = push_body("1200_123456_1_20190124030424@callenabler245.huaweicaas.com").decode()
    out = subprocess.run(["taskset", "-c", "1", sys.executable, "-c", PARSE, body],
                         env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip())


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the services/ directory of the other version")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--traced", action="store_true", help="tracing on in this checkout's ingress")
    parser.add_argument("--ratio", type=float, default=1.0, help="with --traced: the share of pushes sampled")
    args = parser.parse_args()
    traced: dict[str, str] = {}
    if args.traced:
        sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                  "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(args.ratio)}
    code = {"baseline": args.baseline.resolve(), "this": HERE.parent / "services"}
    work = Path(tempfile.mkdtemp(prefix="bench-ingress-ab-"))
    broker = start_broker("apache", state_dir=work / "broker")
    procs = {}
    try:
        ports = {name: free_port() for name in code}
        for name, services in code.items():
            settings = topics.TopicSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"{name}.",
                                            topic_partitions=6, topic_replication=1, topic_min_insync=1)
            asyncio.run(topics.create(settings))
            env = dict(os.environ, PYTHONPATH=str(services), VOICECALL_KAFKA_BOOTSTRAP=broker.bootstrap,
                       VOICECALL_TOPIC_PREFIX=f"{name}.", VOICECALL_INGRESS_HOST="127.0.0.1",
                       VOICECALL_LOG_FORMAT="json", VOICECALL_INGRESS_SPOOL_DIR=str(work / f"spool-{name}"),
                       **(traced if name == "this" else {}))
            procs[name] = start_server([sys.executable, "-m", "voicecall", "ingress", "--port", str(ports[name])],
                                       "0", env, work / f"{name}.log")
        for port in ports.values():
            wait_port(port)
            wait_kafka(port)
            warm(f"http://127.0.0.1:{port}/notify/fee")
        results: dict[str, list[Result]] = {name: [] for name in code}
        for index in range(args.rounds):
            for name in (("baseline", "this") if index % 2 == 0 else ("this", "baseline")):
                result = run_wrk(name, f"http://127.0.0.1:{ports[name]}/notify/fee", args.duration, 64,
                                 pid=procs[name].pid)
                results[name].append(result)
                print(f"round {index:2} {name:<8} {result.rps:>8.0f} req/s  p99 {result.p99_ms:7.2f} ms  "
                      f"{result.cpu_us:6.1f} µs CPU/push  errors {result.errors}", flush=True)
    finally:
        for proc in procs.values():
            stop_server(proc)
        broker.stop()
    pairs = list(zip(results["this"], results["baseline"], strict=True))
    rps = [t.rps / b.rps for t, b in pairs]
    cpu = [t.cpu_us / b.cpu_us for t, b in pairs]
    print("this/baseline req/s per round:   ", " ".join(f"{r:.2f}" for r in rps),
          f"median {statistics.median(rps):.3f}")
    print("this/baseline CPU/push per round:", " ".join(f"{r:.2f}" for r in cpu),
          f"median {statistics.median(cpu):.3f}; {sum(r <= GOAL for r in cpu)} of {len(cpu)} rounds within {GOAL:.2f}")
    cores: dict[str, list[float]] = {name: [] for name in code}
    for _ in range(5):
        for name, services in code.items():
            cores[name].append(parse_us(services))
    print("Parser.parse of the push, µs (best of 7, 5 alternating runs): "
          + ", ".join(f"{name} median {statistics.median(v):.2f}" for name, v in cores.items()),
          f"ratio {statistics.median(cores['this']) / statistics.median(cores['baseline']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
