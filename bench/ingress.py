"""``make bench-ingress``: the ingress against real Apache Kafka, side by side with two baselines, same run.

Starts its own Apache Kafka broker (unpinned), then drives each server — pinned to core 0 — with 64 keep-alive
connections of ~1.1 KB fee pushes from ``wrk`` (core 1), in rounds alternating between the servers:

- bare:     aiohttp + orjson.loads + 200, no Kafka (bench/ingress_baselines.py)
- naive:    aiohttp + one aiokafka send_and_wait per record, acks=all (bench/ingress_baselines.py)
- ingress:  ``voicecall ingress`` (validation, split, CloudEvents headers, metrics, spool fallback)
- signed:   the same ingress with X-AKSK-signed pushes (each verified ``valid``; ``ingress`` gets unsigned ones,
  outcome ``absent`` in the default ``log`` mode): the difference in CPU per request is what verification costs on
  the whole path (bench/signature.py measures the verifier alone)
- baseline: with ``--baseline <checkout>/services``, another version's ingress (e.g. main's) alongside
- split:    ``--workers 2``, both workers on core 0: against ``ingress`` (one worker on that core), what splitting
  the pushes between two processes costs with wrk on a core of its own — the part of ``--workers N`` on N free
  cores this machine can measure

then each server at half the ingress's median rate (an open load: bench/ingress_push.lua's Poisson send times; 3
alternating rounds, the rates reached printed), and
``--workers 2`` against ``--workers 1`` on both cores (SO_REUSEPORT, wrk sharing core 1; with the CPU per push of
all worker processes, and what two free cores would give if each worker's rate followed it). Prints medians, the
per-round ratios against the goals of issue 16 with how many rounds met each, and the machine's load. Numbers are
not asserted; copy them into bench/RESULTS.md.

    .venv/bin/python bench/ingress.py [--duration 10] [--rounds 5] [--baseline /tmp/main/services]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voicecall import topics
from voicecall.devenv.broker import start_broker
from voicecall.devenv.ports import free_port
from voicecall.runtime.kafka import make_consumer

HERE = Path(__file__).resolve().parent
LUA = HERE / "ingress_push.lua"
PREFIX = "bench."


APP_KEY, APP_SECRET = "bench-app", "bench-secret"


def signatures(url: str, path: Path, seconds: int) -> dict[str, str]:
    """X-AKSK values for ``url``, each with its own nonce, for a wrk run of ``seconds`` (wrk's env): 20,000 a second,
    more than any server here answers (at 10,000 a fast host's signed server, 13,084/s, reused nonces)."""
    from voicecall.simulator.signing import x_aksk

    with path.open("w") as out:
        for _ in range(20_000 * seconds):
            out.write(x_aksk(url, APP_KEY, APP_SECRET) + "\n")
    return {"INGRESS_SIGNATURES": str(path)}


def signature_outcomes(port: int) -> dict[str, float]:
    """voicecall_ingress_signature_total of a server, by outcome (the non-zero ones)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^voicecall_ingress_signature_total\{outcome="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {outcome: float(value) for outcome, value in found if float(value)}


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float | None = None  # server CPU per request: robust to other load on the machine, unlike req/s


def push_body(session: str, user: int = 1) -> bytes:
    """The wrk script's push (``LUA``'s template) with its sessionId and userData filled in."""
    lua = LUA.read_text()
    template = "".join(re.findall(r"'(.*?)'", lua.split("local template =")[1].split("request = function")[0], re.S))
    return template.replace("%s", session).replace("%d", str(user)).encode()


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of the live processes its main thread started (``--workers N``'s)."""
    proc = Path(f"/proc/{pid}")
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        children = [int(c) for c in (proc / "task" / str(pid) / "children").read_text().split()]
    except FileNotFoundError:  # it has just ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(map(cpu_seconds, children))


def run_wrk(name: str, url: str, duration: int, connections: int, rate: float = 0.0,
            cores: str = "1", pid: int | None = None, extra_env: dict[str, str] | None = None) -> Result:
    env = dict(os.environ, INGRESS_RATE=str(rate), **(extra_env or {}))
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(LUA), url], env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / max(requests, 1) if pid else None
    return Result(name, rps, p50, p99, requests, errors, cpu_us)


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def wait_kafka(port: int, timeout: float = 60.0, workers: int = 1) -> None:
    """Until the ingress on ``port`` says its Kafka producer is up: pushes made before that go to the spool (and
    while the spool holds anything, so do all later ones), which would measure the spool path instead. With
    ``workers``, until eight answers per worker in a row say so: each asks on a new connection, which the kernel
    hands to a worker by its port (16 answers miss one of two workers about once in 30,000 starts: not a guarantee)."""
    deadline = time.monotonic() + timeout
    up = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                state = json.loads(answer.read())
        except (OSError, ValueError):
            state = {}
        if state.get("broker") == "up" and not state.get("spool", {}).get("bytes"):
            up += 1
            if up >= 8 * workers:
                return
            continue
        up = 0
        time.sleep(0.1)
    raise RuntimeError(f"the ingress on {port} has no Kafka producer after {timeout} s")


def start_server(argv: list[str], cores: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(["taskset", "-c", cores, *argv], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def warm(url: str) -> None:
    run_wrk("warm-up", url, 2, 16)


async def count_records(bootstrap: str, topic: str) -> int:
    settings = topics.TopicSettings(kafka_bootstrap=bootstrap, topic_prefix=PREFIX)
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await asyncio.sleep(0.1)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        starts = await consumer.beginning_offsets(list(partitions))
        return sum(ends[p] - starts[p] for p in partitions)
    finally:
        await consumer.stop()


def _ratios(results: dict[str, list[Result]], a: str, b: str, cpu: bool = False) -> list[float]:
    pairs = zip(results[a], results[b], strict=True)
    return [(x.cpu_us or 0.0) / (y.cpu_us or 1.0) if cpu else x.rps / y.rps for x, y in pairs]


def _goal(label: str, values: list[float], met: Callable[[float], bool], goal: str) -> None:
    _row(label, values, f"{sum(map(met, values))} of {len(values)} rounds {goal}")


def _row(label: str, values: list[float], tail: str) -> None:
    print(f"{label:<26}" + " ".join(f"{v:5.2f}" for v in values) + f"   median {statistics.median(values):.2f}, {tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per server")
    parser.add_argument("--baseline", type=Path, help="another checkout's services/: its ingress runs alongside")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench-ingress needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-ingress-"))
    log = work / "servers.log"
    broker = start_broker("apache", state_dir=work / "broker")
    results: dict[str, list[Result]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    loads = [os.getloadavg()[0]]
    try:
        py = sys.executable
        prefixes = {"ingress": PREFIX, "signed": "signed.", "baseline": "baseline."}
        for prefix in (*prefixes.values(), "naive."):
            settings = topics.TopicSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix,
                                            topic_partitions=6, topic_replication=1, topic_min_insync=1)
            asyncio.run(topics.create(settings))
        env = dict(os.environ, VOICECALL_KAFKA_BOOTSTRAP=broker.bootstrap, VOICECALL_TOPIC_PREFIX=PREFIX,
                   VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_LOG_FORMAT="json",
                   VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool"))
        signed = dict(env, VOICECALL_HUAWEI_APP_KEY=APP_KEY, VOICECALL_HUAWEI_APP_SECRET=APP_SECRET,
                      VOICECALL_TOPIC_PREFIX="signed.", VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool-signed"))
        envs = {"ingress": env, "signed": signed}
        if args.baseline:
            envs["baseline"] = dict(env, PYTHONPATH=str(args.baseline.resolve()), VOICECALL_TOPIC_PREFIX="baseline.",
                                    VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool-baseline"))
        servers = {**envs, "split": dict(env, VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool-split"))}
        names = ["bare", "naive", *servers]
        ports = {name: free_port() for name in names}
        # All up at once, each pinned to core 0 (an idle server costs nothing); rounds alternate between them (in
        # turn reversed) so that load from elsewhere on the machine hits each alike.
        argvs = {
            "bare": [py, str(HERE / "ingress_baselines.py"), "bare", str(ports["bare"])],
            "naive": [py, str(HERE / "ingress_baselines.py"), "naive", str(ports["naive"]), broker.bootstrap,
                      "naive.fee.raw"],
            **{name: [py, "-m", "voicecall", "ingress", "--port", str(ports[name])] for name in envs},
            "split": [py, "-m", "voicecall", "ingress", "--port", str(ports["split"]), "--workers", "2"],
        }
        procs = [start_server(argvs[name], "0", servers.get(name, env), log) for name in names]
        pids = dict(zip(names, (proc.pid for proc in procs), strict=True))
        for name, port in ports.items():
            wait_port(port)
            if name in servers:
                wait_kafka(port, workers=2 if name == "split" else 1)
            warm(f"http://127.0.0.1:{port}/notify/fee")
        results = {name: [] for name in names}
        for index in range(args.rounds):
            for name in names if index % 2 == 0 else reversed(names):
                url = f"http://127.0.0.1:{ports[name]}/notify/fee"
                extra = signatures(url, work / "signatures.txt", args.duration) if name == "signed" else None
                result = run_wrk(name, url, args.duration, args.connections, pid=pids[name], extra_env=extra)
                results[name].append(result)
                print(f"round {index} {name:<8} {result.rps:>8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                      f"p99 {result.p99_ms:6.2f} ms  {result.cpu_us:5.0f} µs CPU/req  errors {result.errors}",
                      flush=True)
            loads.append(os.getloadavg()[0])
        outcomes = signature_outcomes(ports["signed"])
        half = statistics.median(r.rps for r in results["ingress"]) / 2
        unsigned = [name for name in envs if name != "signed"]
        at_half = ["bare", "naive", *unsigned]  # the baselines at the same rate
        for index in range(3):  # alternating, as the full-rate rounds: a slow spell of the host hits each alike
            for name in at_half if index % 2 == 0 else reversed(at_half):
                results.setdefault(f"{name}@half", []).append(run_wrk(
                    f"{name}@half", f"http://127.0.0.1:{ports[name]}/notify/fee", args.duration, args.connections,
                    half, pid=pids[name]))
        for proc in procs:
            stop_server(proc)
        procs = []
        # --workers 2 on both cores (wrk sharing core 1) against one worker in the same place, alternating.
        for index in range(2):
            for workers in (1, 2) if index == 0 else (2, 1):
                port = free_port()
                procs = [start_server([py, "-m", "voicecall", "ingress", "--port", str(port), "--workers",
                                       str(workers)], "0,1", env, log)]
                wait_port(port)
                wait_kafka(port, workers=workers)
                url = f"http://127.0.0.1:{port}/notify/fee"
                warm(url)
                results.setdefault(f"ingress×{workers}", []).append(run_wrk(
                    f"ingress×{workers}", url, args.duration, args.connections, pid=procs[0].pid))
                stop_server(procs.pop())
        loads.append(os.getloadavg()[0])
        stored = asyncio.run(count_records(broker.bootstrap, f"{PREFIX}fee.raw"))
        answered = sum(r.requests - r.errors for k, rs in results.items()
                       if k.startswith("ingress") or k == "split" for r in rs)
    finally:
        for proc in procs:
            stop_server(proc)
        broker.stop()
    print(f"\n{'server':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU µs/req':>12}   (medians)")
    for name, rs in results.items():
        cpus = [r.cpu_us for r in rs if r.cpu_us is not None]
        cpu = f"{statistics.median(cpus):.0f}" if cpus else "-"
        print(f"{name:<16}{statistics.median(r.rps for r in rs):>10.0f}{statistics.median(r.p50_ms for r in rs):>9.2f}"
              f"{statistics.median(r.p99_ms for r in rs):>9.2f}{sum(r.errors for r in rs):>8}{cpu:>12}")
    print("\nper round (ingress / other):")
    _goal("CPU/push ÷ naive", _ratios(results, "ingress", "naive", cpu=True), lambda v: v <= 1.0, "≤ 1.0")
    _goal("req/s ÷ naive", _ratios(results, "ingress", "naive"), lambda v: v >= 1.0, "≥ 1.0")
    _goal("req/s ÷ bare", _ratios(results, "ingress", "bare"), lambda v: v >= 0.5, "≥ 0.50")
    if "baseline" in results:
        _goal("CPU/push ÷ baseline", _ratios(results, "ingress", "baseline", cpu=True), lambda v: v <= 1.0, "≤ 1.0")
        _goal("req/s ÷ baseline", _ratios(results, "ingress", "baseline"), lambda v: v >= 1.0, "≥ 1.0")
        _goal("baseline CPU ÷ naive", _ratios(results, "baseline", "naive", cpu=True), lambda v: v <= 1.0, "≤ 1.0")
    _goal("split req/s ÷ ingress", _ratios(results, "split", "ingress"), lambda v: v >= 0.85, "≥ 0.85")
    signed_cost = [(s.cpu_us or 0.0) - (i.cpu_us or 0.0) for s, i in zip(results["signed"], results["ingress"],
                                                                           strict=True)]
    # No goal on the whole path: issue 19's ≤ 10 µs is the verifier's alone (bench/signature.py).
    _row("signed − unsigned CPU µs", signed_cost, "what verifying costs on the whole path")
    print(f"the signed server's outcomes: {outcomes}")
    for name in unsigned:
        p99 = [r.p99_ms for r in results[f"{name}@half"]]
        _goal(f"{name} p99 ms @ {half:.0f}/s", p99, lambda v: v <= 15.0, "≤ 15 ms")
    for name in ("bare", "naive"):
        print(f"{name} p99 ms at the same rate: {' '.join(f'{r.p99_ms:.2f}' for r in results[name + '@half'])}")
    for name in ("bare", "naive", *unsigned):
        print(f"{name} req/s sent at {half:.0f}/s: {' '.join(f'{r.rps:.0f}' for r in results[name + '@half'])}")
    one = statistics.median(r.rps for r in results["ingress×1"])
    two = statistics.median(r.rps for r in results["ingress×2"]) / one
    print(f"--workers 2 = {two:.2f} × --workers 1 on the same two cores (goal ≥ 1.70 on two free cores; here wrk "
          f"and the broker share them)")
    # What two free cores would give if each worker's rate follows its CPU: one worker's CPU per push over two's.
    cpu = {n: statistics.median(r.cpu_us or 0.0 for r in results[f"ingress×{n}"]) for n in (1, 2)}
    cores = {n: statistics.median((r.cpu_us or 0.0) * r.requests / 1e6 / args.duration
                                  for r in results[f"ingress×{n}"]) for n in (1, 2)}
    print(f"--workers 1 / 2: {cpu[1]:.0f} / {cpu[2]:.0f} µs CPU per push on {cores[1]:.2f} / {cores[2]:.2f} cores "
          f"(all processes): per push, two workers are {cpu[1] / cpu[2]:.2f} as efficient as one; on two free cores "
          f"that would be ~{2 * cpu[1] / cpu[2]:.2f} × one worker (an estimate, not a measurement)")
    split = statistics.median(_ratios(results, "split", "ingress"))
    print(f"--workers 2 sharing core 0 = {split:.2f} × one worker there (wrk on core 1): if nothing else were shared, "
          f"two free cores would give ~{2 * split:.2f} × one worker (an estimate, not a measurement)")
    print(f"machine load (1-min load average) before, after each round, at the end: "
          f"{' '.join(f'{v:.1f}' for v in loads)} on {os.cpu_count()} cores")
    print(f"fee.raw holds {stored} records for ≥ {answered} answered ingress pushes (warm-ups included in Kafka)")
    print(f"server logs: {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
