"""``voicecall ingress``: serve the HTTP ingress until SIGTERM/SIGINT, then answer what is in flight and exit 0.

``--workers N`` runs N processes sharing the port (SO_REUSEPORT), each with its own spool under the spool
directory (``w0``, ``w1``, … taken with a lock, so two processes never share one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

from aiohttp import web

from voicecall.ingress.app import create_app, make_runner
from voicecall.ingress.config import IngressSettings
from voicecall.runtime import children, config, lifecycle, logging as vlog, metrics, tracing
from voicecall.runtime.children import Child


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (VOICECALL_INGRESS_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (VOICECALL_INGRESS_PORT, default 8080)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--spool-dir", help="local spool directory (VOICECALL_INGRESS_SPOOL_DIR, default .state/spool)")
    parser.add_argument("--workers", type=int, help="processes sharing the port (VOICECALL_INGRESS_WORKERS, default 1)")


def spool_slot(base: Path, workers: int) -> Path:
    """The first ``w<i>`` directory no other live process holds (the spool's own flock decides for real)."""
    import fcntl

    for index in range(workers + 16):
        path = base / f"w{index}"
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)  # released here; the spool takes it again at once
        return path
    raise SystemExit(f"VOICECALL_INGRESS_SPOOL_DIR: no free spool slot under {base}")


async def serve(settings: IngressSettings, stop: asyncio.Event, reuse_port: bool = False) -> None:
    log = vlog.get("ingress")
    tracing.setup("ingress")  # on only when the OTEL_* variables ask for it
    # The port first: when it is taken, nothing else (spool, producer) has started yet.
    sock = metrics.bind(settings.ingress_host, settings.ingress_port, ("VOICECALL_INGRESS_PORT", "--port"),
                        reuse_port=reuse_port)
    app = create_app(settings, spool_slot(Path(settings.ingress_spool_dir), settings.ingress_workers))
    runner = make_runner(app, settings)
    await runner.setup()
    # Everything built so far lives as long as the process: freeze it out of the collector's view, and collect the
    # young generation less often: full collections over the startup heap were the p99 tail and a share of the CPU
    # per push (bench/RESULTS.md, Ingress).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    await web.SockSite(runner, sock, backlog=1024).start()
    log.info("ingress listening", host=settings.ingress_host, port=sock.getsockname()[1],
             path_token_enabled=settings.ingress_path_token is not None, pid=os.getpid())
    watchdog = asyncio.create_task(_watch_parent(stop)) if reuse_port else None
    await stop.wait()
    if watchdog is not None:
        watchdog.cancel()
    # Stops listening, lets in-flight requests finish, then runs the app's cleanup (flush producer, close spool).
    await runner.cleanup()


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - no event exists for "my parent died"
        await asyncio.sleep(1.0)
    vlog.get("ingress").warning("worker parent gone, stopping")
    stop.set()


def run_workers(settings: IngressSettings, argv: list[str]) -> int:
    """Parent of N worker processes: one SIGTERM to each on SIGTERM/SIGINT; exits 0 once every worker stopped
    cleanly. A worker that dies is not started again (the others keep serving); when none is left, it exits 1."""
    # A taken port is one refusal here, not one per worker.
    metrics.bind(settings.ingress_host, settings.ingress_port, ("VOICECALL_INGRESS_PORT", "--port"),
                 reuse_port=True).close()
    env = dict(os.environ, VOICECALL_INGRESS_WORKER="1")
    # Own process groups: a signal to the parent's group reaches each worker once, through the parent (a second
    # one means "exit now"); a worker whose parent vanished stops by itself.
    workers = [Child(f"worker {index}", [sys.executable, "-m", "voicecall", "ingress", *argv], env)
               for index in range(settings.ingress_workers)]

    async def parent(stop: asyncio.Event) -> None:
        for worker in workers:
            worker.start()
        await children.supervise(workers, stop, restarts=0)
        # a worker answers what is in flight within its shutdown timeout, then flushes its producer
        await children.stop_in_order([workers], timeout=settings.ingress_shutdown_timeout + 30)

    code = lifecycle.run(parent, on_force=lambda: children.kill_all(workers))
    return 0 if code == 0 and all(worker.poll() == 0 for worker in workers) else 1


def main(args: argparse.Namespace) -> int:
    settings = config.load(IngressSettings, ingress_host=args.host, ingress_port=args.port,
                           kafka_bootstrap=args.bootstrap, ingress_spool_dir=args.spool_dir,
                           ingress_workers=args.workers)
    vlog.setup(settings.log_level, settings.log_format)
    if settings.ingress_workers > 1 and not settings.ingress_worker:
        return run_workers(settings, sys.argv[2:])
    return lifecycle.run(lambda stop: serve(settings, stop, reuse_port=settings.ingress_worker))
