"""The ingress aiohttp app: the notify routes and /metrics, /healthz, /readyz; the spool and the publisher live as
long as the app (``cleanup_ctx``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from voicecall.ingress import metrics
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.drain import Drainer
from voicecall.ingress.handlers import Notify, make_handler
from voicecall.ingress.publisher import Publisher
from voicecall.ingress.server import DIRECT, Runner, expect_handler, fallback
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog
from voicecall.runtime.metrics import add_ops_routes

log = vlog.get("ingress")

SPOOL = web.AppKey("spool", Spool)
PUBLISHER = web.AppKey("publisher", Publisher)
DRAINER = web.AppKey("drainer", Drainer)
LINGER = 2.0


def create_app(settings: IngressSettings, spool_dir: Path | None = None) -> web.Application:
    # Bodies are decoded by the handlers (Content-Encoding, with the size limit on the decoded bytes). After an
    # answer given before the whole body came (408, 413) the rest is read and dropped for LINGER seconds, so the
    # client can read the answer, then the connection is closed: a slow body holds it read timeout + LINGER at most.
    app = web.Application(client_max_size=settings.ingress_max_body,
                          handler_args={"max_field_size": 16384, "auto_decompress": False, "lingering_time": LINGER})
    spool = Spool(spool_dir or Path(settings.ingress_spool_dir), settings.ingress_spool_max_bytes,
                  settings.ingress_spool_segment_bytes)
    publisher = Publisher(settings, spool)
    drainer = Drainer(spool, publisher)
    app[SPOOL], app[PUBLISHER], app[DRAINER] = spool, publisher, drainer
    add_notify_routes(app, settings.ingress_path_token, Notify(settings, publisher))
    add_ops_routes(app, lambda: drainer.ready(*publisher.ready()))
    app.router.add_route("*", "/{tail:.*}", fallback)  # after every other route: 404 and 405 as JSON
    app.cleanup_ctx.append(_lifecycle)
    return app


def make_runner(app: web.Application, settings: IngressSettings, **kwargs: Any) -> web.AppRunner:
    """The runner that serves ``app`` with bounded header times, JSON error answers and no access log."""
    kwargs.setdefault("shutdown_timeout", settings.ingress_shutdown_timeout)
    return Runner(app, header_timeout=settings.ingress_header_timeout, access_log=None, handle_signals=False,
                  keepalive_timeout=settings.ingress_keepalive_timeout, **kwargs)


def add_notify_routes(app: web.Application, token: str | None, notify: Notify) -> None:
    base = f"/notify/{token}" if token else "/notify"
    shown = "/notify/{token}" if token else "/notify"  # the token never reaches logs or deadletter
    expect = expect_handler(notify.max_body)
    direct = app[DIRECT] = {}
    for route, tail in (("status", "/status"), ("fee", "/fee"), ("notify", "")):
        handler = direct[base + tail] = make_handler(notify, route, base + tail, shown + tail)
        app.router.add_post(base + tail, handler, expect_handler=expect)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    spool, publisher, drainer = app[SPOOL], app[PUBLISHER], app[DRAINER]
    try:
        spool.open()
        metrics.bind_spool(spool)
        if spool.pending_entries:
            log.info("spool holds pushes from a previous run, draining", entries=spool.pending_entries,
                     segments=len(spool.segments))
    except SpoolError as error:
        # Without a spool the ingress still serves while Kafka acknowledges; it answers 503 otherwise.
        log.error("spool unusable", error=str(error))
    # Serve as soon as the spool is ready: a push during Kafka's absence is spooled, not refused.
    publisher.start()
    drainer.start()
    yield
    await drainer.stop()
    await publisher.stop()
    await spool.close()
    log.info("ingress stopped", spool_entries=spool.pending_entries)
