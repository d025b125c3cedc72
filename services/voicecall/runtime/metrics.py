"""Prometheus metrics and the small ops HTTP server (/metrics, /healthz, /readyz) every consumer runs."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Readiness = Callable[[], tuple[bool, dict[str, object]]]


async def metrics_handler(_: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_ops_routes(app: web.Application, ready: Readiness | None = None) -> None:
    """Mount /metrics, /healthz and /readyz on an aiohttp app."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, detail = ready() if ready else (True, {})
        return web.json_response({"ready": ok, **detail}, status=200 if ok else 503)

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def serve_ops(host: str, port: int, ready: Readiness | None = None) -> web.AppRunner:
    """Start an ops server; the caller awaits ``runner.cleanup()`` on shutdown."""
    app = web.Application()
    add_ops_routes(app, ready)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port an ops server really listens on (useful with port 0 in tests)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("ops server is not listening")

