"""The ingress aiohttp app: the notify routes and /metrics, /healthz, /readyz; the spool and the publisher live as
long as the app (``cleanup_ctx``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from voicecall.ingress import metrics
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.handlers import Notify, make_handler
from voicecall.ingress.publisher import Publisher
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog
from voicecall.runtime.metrics import add_ops_routes

log = vlog.get("ingress")

SPOOL = web.AppKey("spool", Spool)
PUBLISHER = web.AppKey("publisher", Publisher)


def create_app(settings: IngressSettings, spool_dir: Path | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.ingress_max_body, handler_args={"max_field_size": 16384})
    spool = Spool(spool_dir or Path(settings.ingress_spool_dir), settings.ingress_spool_max_bytes,
                  settings.ingress_spool_segment_bytes)
    publisher = Publisher(settings, spool)
    app[SPOOL] = spool
    app[PUBLISHER] = publisher
    add_notify_routes(app, settings.ingress_path_token, Notify(settings, publisher))
    add_ops_routes(app, publisher.ready)
    app.cleanup_ctx.append(_lifecycle)
    return app


def add_notify_routes(app: web.Application, token: str | None, notify: Notify) -> None:
    base = f"/notify/{token}" if token else "/notify"
    shown = "/notify/{token}" if token else "/notify"  # the token never reaches logs or deadletter
    app.router.add_post(f"{base}/status", make_handler(notify, "status", f"{shown}/status"))
    app.router.add_post(f"{base}/fee", make_handler(notify, "fee", f"{shown}/fee"))
    app.router.add_post(base, make_handler(notify, "notify", shown))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    spool, publisher = app[SPOOL], app[PUBLISHER]
    try:
        spool.open()
        metrics.bind_spool(spool.state)
        if spool.pending_entries:
            log.info("spool holds pushes from a previous run, draining", entries=spool.pending_entries,
                     segments=len(spool.segments))
    except SpoolError as error:
        # Without a spool the ingress still serves while Kafka acknowledges; it answers 503 otherwise.
        log.error("spool unusable", error=str(error))
    # Serve as soon as the spool is ready: a push during Kafka's absence is spooled, not refused.
    publisher.start()
    yield
    await publisher.stop()
    await spool.close()
    log.info("ingress stopped", spool_entries=spool.pending_entries)
