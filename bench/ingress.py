"""``make bench-ingress``: the ingress against real Apache Kafka, side by side with two baselines, same run.

Starts its own Apache Kafka broker (unpinned), then drives each server — pinned to core 0 — with 64 keep-alive
connections of ~1.1 KB fee pushes from ``wrk`` (core 1), in alternating rounds (the best round counts):

- bare:    aiohttp + orjson.loads + 200, no Kafka (bench/ingress_baselines.py)
- naive:   aiohttp + one aiokafka send_and_wait per record, acks=all (bench/ingress_baselines.py)
- ingress: ``voicecall ingress`` (validation, split, CloudEvents headers, metrics, spool fallback), unsigned
  pushes (signature outcome ``absent`` in the default ``log`` mode)
- signed:  the same ingress with X-AKSK-signed pushes (each verified ``valid``): the difference in CPU per request
  is what verification costs on the whole path (bench/signature.py measures the verifier alone)

then the ingress at about half its maximum rate (wrk's per-connection delay), and ``--workers 2``
(SO_REUSEPORT, both cores, wrk sharing core 1). Prints req/s, p50, p99 and the ratios. Numbers are not asserted;
copy them into bench/RESULTS.md.

    .venv/bin/python bench/ingress.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def signatures(url: str, path: Path, count: int) -> dict[str, str]:
    """``count`` X-AKSK values for ``url``, each with its own nonce, for one wrk run (wrk's env)."""
    from voicecall import huawei

    created = huawei.created_now()
    with path.open("w") as out:
        for _ in range(count):
            nonce = huawei.new_nonce()
            digest = huawei.push_digest(APP_SECRET, url, nonce, created)
            out.write(huawei.format_x_aksk(APP_KEY, digest, nonce, created) + "\n")
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


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(name: str, url: str, duration: int, connections: int, delay_ms: float = 0.0,
            cores: str = "1", pid: int | None = None, extra_env: dict[str, str] | None = None) -> Result:
    env = dict(os.environ, INGRESS_DELAY_MS=str(delay_ms), **(extra_env or {}))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per server; the best counts")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench-ingress needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-ingress-"))
    log = work / "servers.log"
    broker = start_broker("apache", state_dir=work / "broker")
    results: dict[str, Result] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = topics.TopicSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=PREFIX, topic_partitions=6,
                                        topic_replication=1, topic_min_insync=1)
        asyncio.run(topics.create(settings))
        asyncio.run(topics.create(settings.model_copy(update={"topic_prefix": "naive."})))
        env = dict(os.environ, VOICECALL_KAFKA_BOOTSTRAP=broker.bootstrap, VOICECALL_TOPIC_PREFIX=PREFIX,
                   VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_LOG_FORMAT="json",
                   VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool"))
        py = sys.executable
        ports = {name: free_port() for name in ("bare", "naive", "ingress", "signed")}
        # All three up at once, each pinned to core 0 (an idle server costs nothing); rounds alternate between
        # them so that load from elsewhere on the machine hits each alike; the best round of each counts.
        argvs = {
            "bare": [py, str(HERE / "ingress_baselines.py"), "bare", str(ports["bare"])],
            "naive": [py, str(HERE / "ingress_baselines.py"), "naive", str(ports["naive"]), broker.bootstrap,
                      "naive.fee.raw"],
            "ingress": [py, "-m", "voicecall", "ingress", "--port", str(ports["ingress"])],
            "signed": [py, "-m", "voicecall", "ingress", "--port", str(ports["signed"])],
        }
        signed_env = dict(env, VOICECALL_HUAWEI_APP_KEY=APP_KEY, VOICECALL_HUAWEI_APP_SECRET=APP_SECRET,
                          VOICECALL_INGRESS_SPOOL_DIR=str(work / "spool-signed"))
        procs = [start_server(argv, "0", signed_env if name == "signed" else env, log)
                 for name, argv in argvs.items()]
        pids = dict(zip(argvs, (proc.pid for proc in procs), strict=True))
        for port in ports.values():
            wait_port(port)
            warm(f"http://127.0.0.1:{port}/notify/fee")
        for _ in range(args.rounds):
            for name, port in ports.items():
                url = f"http://127.0.0.1:{port}/notify/fee"
                extra = signatures(url, work / "signatures.txt", 10_000 * args.duration) if name == "signed" else None
                result = run_wrk(name, url, args.duration, args.connections, pid=pids[name], extra_env=extra)
                print(f"  {name:<8} {result.rps:>8.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
                      f"  {result.cpu_us:5.0f} µs CPU/req", flush=True)
                if name not in results or result.rps > results[name].rps:
                    results[name] = result
        outcomes = signature_outcomes(ports["signed"])
        url = f"http://127.0.0.1:{ports['ingress']}/notify/fee"
        half = results["ingress"].rps / 2
        delay = max(0.0, args.connections * 1000.0 / half - results["ingress"].p50_ms)
        results["ingress@half"] = run_wrk("ingress@half", url, args.duration, args.connections, delay,
                                          pid=pids["ingress"])
        for proc in procs:
            stop_server(proc)
        procs = []
        port = free_port()
        procs = [start_server([py, "-m", "voicecall", "ingress", "--port", str(port), "--workers", "2"], "0,1",
                              env, log)]
        wait_port(port)
        url = f"http://127.0.0.1:{port}/notify/fee"
        warm(url)
        results["ingress×2"] = run_wrk("ingress×2", url, args.duration, args.connections)
        for proc in procs:
            stop_server(proc)
        procs = []
        stored = asyncio.run(count_records(broker.bootstrap, f"{PREFIX}fee.raw"))
        answered = sum(r.requests - r.errors for k, r in results.items() if k.startswith(("ingress", "signed")))
    finally:
        for proc in procs:
            stop_server(proc)
        broker.stop()
    print(f"\n{'server':<14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU µs/req':>12}")
    for r in results.values():
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
        print(f"{r.name:<14}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}{cpu:>12}")
    ing, bare, naive = results["ingress"], results["bare"], results["naive"]
    print(f"\ningress / bare  = {ing.rps / bare.rps:.2f}   (goal ≥ 0.60)")
    print(f"ingress / naive = {ing.rps / naive.rps:.2f}   (goal ≥ 0.90)")
    if ing.cpu_us and bare.cpu_us and naive.cpu_us:
        print(f"CPU per request: bare {bare.cpu_us:.0f} µs, naive {naive.cpu_us:.0f} µs, ingress {ing.cpu_us:.0f} µs "
              f"(ratios bare/ingress {bare.cpu_us / ing.cpu_us:.2f}, naive/ingress {naive.cpu_us / ing.cpu_us:.2f})")
    signed = results["signed"]
    if ing.cpu_us and signed.cpu_us:
        print(f"signed pushes: {signed.rps / ing.rps:.2f}× the req/s of unsigned ones; CPU per request "
              f"{signed.cpu_us - ing.cpu_us:+.1f} µs (verification on the whole path; goal ≤ 10 µs)")
        print(f"the signed server's outcomes: {outcomes}")
    print(f"machine load during the run (1-min load average): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    half = results["ingress@half"]
    print(f"p99 at ~half max rate ({half.rps:.0f} req/s) = {half.p99_ms:.2f} ms   (goal ≤ 25 ms)")
    print(f"second worker: {results['ingress×2'].rps / ing.rps:.2f}× one worker (wrk shares core 1)")
    print(f"fee.raw holds {stored} records for ≥ {answered} answered ingress pushes (warm-ups included in Kafka)")
    print(f"server logs: {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
