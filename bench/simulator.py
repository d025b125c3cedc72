"""How much load the simulator can generate: ``Platform`` pushes/s against a plain aiohttp client baseline.

The simulator has no Kafka side, so this benchmark starts no broker: the receiver is a minimal aiohttp server in its
own process (answering 200 ``{"resultcode":"0"}``), the pusher runs in this process. Both the simulator and the
baseline send the same bodies with the same concurrency; the baseline only POSTs pre-built bytes, so the ratio is
the cost of generating calls, ordering statuses per call, merging CDRs and counting answers.

Also measures the recording API's file streaming (deterministic WAV bytes) against aiohttp serving the same bytes
from a file on disk.

Run: ``.venv/bin/python bench/simulator.py [--calls 3000] [--concurrency 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from voicecall.runtime import lifecycle
from voicecall.simulator import pushes, wav
from voicecall.simulator.calls import CallOptions, generate
from voicecall.simulator.platform import Platform
from voicecall.simulator.recording_api import RecordingApi

START = datetime(2026, 3, 1, tzinfo=UTC)

RECEIVER = """
import asyncio, sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.Response(body=b'{"resultcode":"0","resultdesc":"Success"}', content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


async def simulator_rate(base: str, calls: int, concurrency: int) -> tuple[float, int]:
    platform = Platform(base + "/notify/status", base + "/notify/fee", seed=1, calls=calls, rate=100.0, speed=0.0,
                        start_time=START, concurrency=concurrency)
    began = time.perf_counter()
    summary = await platform.run()
    elapsed = time.perf_counter() - began
    sent = summary.status_pushes + summary.fee_pushes
    assert summary.lost == 0
    return sent / elapsed, sent


async def baseline_rate(base: str, calls: int, concurrency: int) -> tuple[float, int]:
    bodies = [(base + ("/notify/status" if isinstance(item, pushes.StatusPush) else "/notify/fee"), item.body)
              for item in pushes.timeline(generate(CallOptions(seed=1, start=START, rate=100.0), calls))
              if not isinstance(item, pushes.CallStarted)]
    headers = {"Content-Type": pushes.CONTENT_TYPE}
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            url, body = queue.get_nowait()
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200

    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return len(bodies) / elapsed, len(bodies)


async def download(url: str) -> tuple[float, str]:
    digest = hashlib.sha256()
    size = 0
    began = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        async for piece in answer.content.iter_chunked(1 << 20):
            digest.update(piece)
            size += len(piece)
    return size / (time.perf_counter() - began) / 1e6, digest.hexdigest()


async def recording_rates(size: int) -> tuple[float, float]:
    api = await RecordingApi("k", "s").start()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.wav"
        with path.open("wb") as out:
            for piece in wav.chunks("r.wav", size):
                out.write(piece)
        app = web.Application()
        app.router.add_static("/static", tmp)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            url = api.add_file("r.wav", size)
            simulated, digest = await download(url)
            static, static_digest = await download(f"http://127.0.0.1:{runner.addresses[0][1]}/static/r.wav")
            assert digest == static_digest
        finally:
            await runner.cleanup()
            await api.stop()
    return simulated, static


async def measure(args: argparse.Namespace, base: str) -> None:
    await baseline_rate(base, 200, args.concurrency)  # warm-up
    rows = []
    for _ in range(args.rounds):
        sim, sent = await simulator_rate(base, args.calls, args.concurrency)
        raw, _ = await baseline_rate(base, args.calls, args.concurrency)
        rows.append((sim, raw))
        print(f"pushes {sent}: simulator {sim:8.0f}/s   baseline aiohttp client {raw:8.0f}/s   "
              f"ratio {sim / raw:.2f}", flush=True)
    best_sim = max(row[0] for row in rows)
    best_raw = max(row[1] for row in rows)
    ratios = sorted(sim / raw for sim, raw in rows)
    print(f"best: simulator {best_sim:.0f} pushes/s, baseline {best_raw:.0f} pushes/s, "
          f"ratio of bests {best_sim / best_raw:.2f}, median of paired ratios {ratios[len(ratios) // 2]:.2f}")
    simulated, static = await recording_rates(args.file_mib << 20)
    print(f"recording download {args.file_mib} MiB: simulator {simulated:.0f} MB/s, "
          f"aiohttp static file {static:.0f} MB/s, ratio {simulated / static:.2f}")


def main(args: argparse.Namespace) -> None:
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        base = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        # the event loop ``voicecall simulate`` runs on (uvloop), for both sides
        with asyncio.Runner(loop_factory=lifecycle.new_event_loop) as runner:
            runner.run(measure(args, base))
    finally:
        receiver.terminate()
        receiver.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file-mib", type=int, default=100)
    main(parser.parse_args())
