"""Prometheus metrics and the small ops HTTP server (/metrics, /healthz, /readyz) every consumer runs."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from voicecall.runtime.failures import port_refusal

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
    """Start an ops server; the caller awaits ``runner.cleanup()`` on shutdown. A port it cannot listen on is a
    :class:`Refusal` naming VOICECALL_METRICS_PORT."""
    app = web.Application()
    add_ops_routes(app, ready)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await listen(runner, host, port, ("VOICECALL_METRICS_PORT", "--metrics-port"), reuse_address=True)
    return runner


def bind(host: str, port: int, setting: tuple[str, str | None], *, reuse_port: bool = False) -> socket.socket:
    """A socket bound to ``host:port`` (for ``web.SockSite``), taken before anything else starts: a port it cannot
    have is a :class:`Refusal` naming ``setting`` (the variable and flag that chose it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise port_refusal(host, port, error, *setting) from None
    return sock


async def listen(runner: web.AppRunner, host: str, port: int, setting: tuple[str, str | None], **site_options: Any
                 ) -> web.TCPSite:
    """A started site of ``runner`` on ``host:port``; when it cannot listen there (taken, privileged, no such
    address) the runner is cleaned up and the :class:`Refusal` names ``setting`` (the variable and flag that chose
    the port)."""
    site = web.TCPSite(runner, host, port, **site_options)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise port_refusal(host, port, error, *setting) from None
    return site


def bound_port(runner: web.AppRunner) -> int:
    """The port an ops server really listens on (useful with port 0 in tests)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("ops server is not listening")


class Tally(Collector):
    """A counter kept as plain integers and read at scrape time, for counting per record on a hot path.

    A prometheus_client ``Counter.inc()`` takes a lock and costs about as much as a small core's whole work on a
    record; a stage's loop and its ops server share one event loop thread, so plain integers are safe there (and
    only there: not for code running in other threads). Counts go up only; an unlabelled tally shows 0 from the
    start, like a Counter.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.values: dict[tuple[str, ...], int] = {} if labelnames else {(): 0}
        registry.register(self)

    def add(self, labels: tuple[str, ...] = (), amount: int = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for labels, value in sorted(self.values.items()):
            family.add_metric(list(labels), value)
        yield family
