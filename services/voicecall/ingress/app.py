"""The aiohttp shell around the pure core: read the body, parse, make the records durable, answer.

The request path is the product (see the performance notes): no access log, no per-push log line above debug,
one shared producer, metric label children cached, ids and times made without ``uuid``/``datetime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from voicecall.ingress import metrics
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.parse import Outcome, Parser
from voicecall.ingress.publisher import Publisher, Unavailable
from voicecall.ingress.spool import Spool, SpoolError
from voicecall.runtime import logging as vlog, times
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.kafka import make_producer
from voicecall.runtime.metrics import add_ops_routes
from voicecall.runtime.partition import partitioner

log = vlog.get("ingress")

OK_BODY = b'{"resultcode":"0","resultdesc":"Success"}'
JSON = "application/json;charset=UTF-8"


def error_body(detail: str) -> bytes:
    return orjson.dumps({"resultcode": "1", "resultdesc": detail})


class ClientFilter:
    """Optional allowlist of client networks; ``X-Forwarded-For`` counts only when the peer is a trusted proxy."""

    def __init__(self, allow: list[str], trusted: list[str]) -> None:
        self.allow = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]

    @staticmethod
    def _in(address: str, networks: list[Any]) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    def client(self, request: web.Request) -> str:
        peer = request.remote or ""
        if self.trusted and self._in(peer, self.trusted):
            forwarded = request.headers.get("X-Forwarded-For", "")
            # The right-most address a trusted proxy did not add is the real client.
            for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                if not self._in(hop, self.trusted):
                    return hop
        return peer

    def allowed(self, client: str) -> bool:
        return not self.allow or self._in(client, self.allow)


class IngressState:
    def __init__(self, settings: IngressSettings, spool_dir: Path) -> None:
        self.settings = settings
        self.parser = Parser(settings)
        self.spool = Spool(spool_dir, settings.ingress_spool_max_bytes, settings.ingress_spool_segment_bytes)
        self.producer: Any = None
        self.publisher = Publisher(None, self.spool, settings.ingress_ack_deadline, renew=self.renew_producer,
                                   linger=settings.ingress_linger_ms / 1000)
        self.clock = times.Clock()
        self.clients = ClientFilter(settings.ingress_allow, settings.ingress_trusted_proxies)
        self.boot = os.urandom(6).hex()
        self.counter = 0
        self.max_body = settings.ingress_max_body
        self.read_timeout = settings.ingress_read_timeout
        self.tasks: list[asyncio.Task[None]] = []

    async def renew_producer(self) -> None:
        """A fresh producer (new producer id) in place of one whose idempotence state the broker rejects."""
        old = self.producer
        fresh = make_producer(self.settings, client_suffix="-ingress", linger_ms=self.settings.ingress_linger_ms,
                              max_batch_size=256 * 1024, partitioner=partitioner)
        delay = 0.5
        while True:
            try:
                await fresh.start()
                break
            except Exception as error:
                log.warning("new producer cannot start yet", error=repr(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.producer = self.publisher.producer = fresh
        log.info("new Kafka producer started")
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 10)  # its pending sends fail; their pushes are in the spool

    def push_id(self) -> str:
        self.counter += 1
        return f"{self.boot}-{self.counter:x}"

    def ready(self) -> tuple[bool, dict[str, object]]:
        broker = "up" if (self.producer is not None and self.publisher.broker_up) else "down"
        spool = self.spool.state()
        # Ready = a push can be made durable now: by Kafka, or by the spool while Kafka is away.
        ok = broker == "up" or bool(spool["usable"])
        detail: dict[str, object] = {"broker": broker, "spool": spool}
        if self.publisher.broker_error and broker == "down":
            detail["broker_error"] = self.publisher.broker_error
        return ok, detail


SETTINGS = web.AppKey("settings", IngressSettings)
STATE = web.AppKey("state", IngressState)


async def read_body(request: web.Request, limit: int, timeout: float) -> tuple[bytes, bool]:
    """The body and whether it fits; an oversized one is read only a little past ``limit`` (for deadletter)."""
    length = request.content_length
    if length is not None and length <= limit:
        if request.content.at_eof() or request.content.total_bytes >= length:
            return await request.read(), True
        async with asyncio.timeout(timeout):
            return await request.read(), True
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout):
        while size <= limit:
            chunk = await request.content.readany()
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks), size <= limit


def make_handler(route: str, path_label: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        state: IngressState = request.app[STATE]
        started = time.perf_counter()
        client = state.clients.client(request)
        if not state.clients.allowed(client):
            log.info("client not allowed", client=client, path=path_label)
            metrics.count_request(route, 403)
            return web.Response(status=403, body=error_body("client not allowed"), content_type="application/json")
        try:
            body, fits = await read_body(request, state.max_body, state.read_timeout)
        except TimeoutError:
            metrics.count_request(route, 408)
            return web.Response(status=408, body=error_body("body not received in time"),
                                content_type="application/json")
        origin: dict[str, Any] = {"path": path_label, "client": client}
        received = state.clock.now()
        push_id = state.push_id()
        if fits:
            outcome = state.parser.parse(body, received=received, push_id=push_id, origin=origin)
        else:
            detail = f"body over {state.max_body} bytes"
            if request.content_length is not None:
                origin["content_length"] = request.content_length
            outcome = state.parser.reject(body, Reason.TOO_LARGE, detail, origin, received, push_id, status=413)
        try:
            via = await state.publisher.publish(outcome.records)
        except Unavailable as error:
            metrics.UNAVAILABLE.inc()
            metrics.count_request(route, 503)
            log.error("push not durable, answering 503", error=str(error), event_type=outcome.event_type,
                      session_ids=outcome.session_ids[:5])
            return web.Response(status=503, body=error_body("temporarily unavailable"),
                                content_type="application/json", headers={"Retry-After": "5"})
        metrics.observe_durable(via, time.perf_counter() - started)
        if via == "kafka":
            metrics.count_record(outcome.records[0].topic, len(outcome.records))
        else:
            metrics.SPOOLED.inc()
        metrics.count_request(route, outcome.status)
        if outcome.reason is not None:
            _log_rejection(outcome, origin, via)
            metrics.DEADLETTER.labels(outcome.reason).inc()
        else:
            log.debug("push durable", event_type=outcome.event_type, session_ids=outcome.session_ids, via=via)
        if outcome.status == 200:
            return web.Response(body=OK_BODY, content_type="application/json", charset="UTF-8")  # fastest form
        return web.Response(status=outcome.status, body=error_body(outcome.detail), content_type="application/json")

    return handle


def _log_rejection(outcome: Outcome, origin: dict[str, Any], via: str) -> None:
    log.info("push kept in deadletter", status=outcome.status, reason=outcome.reason, detail=outcome.detail[:200],
             event_type=outcome.event_type, path=origin["path"], client=origin["client"], via=via)


def add_notify_routes(app: web.Application, token: str | None) -> None:
    base = f"/notify/{token}" if token else "/notify"
    shown = "/notify/{token}" if token else "/notify"  # the token never reaches logs or deadletter
    app.router.add_post(f"{base}/status", make_handler("status", f"{shown}/status"))
    app.router.add_post(f"{base}/fee", make_handler("fee", f"{shown}/fee"))
    app.router.add_post(base, make_handler("notify", shown))


async def _start_producer(state: IngressState) -> None:
    """Start the producer, retrying while Kafka is away; pushes go to the spool meanwhile."""
    delay = 0.5
    while True:
        producer = make_producer(state.settings, client_suffix="-ingress", linger_ms=state.settings.ingress_linger_ms,
                                 max_batch_size=256 * 1024, partitioner=partitioner)
        try:
            await producer.start()
        except Exception as error:
            with contextlib.suppress(Exception):
                await producer.stop()
            state.publisher.broker_error = repr(error)
            log.warning("Kafka not reachable at start, spooling meanwhile", error=repr(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        state.producer = producer
        state.publisher.producer = producer
        state.publisher.broker_up = True
        state.publisher.broker_error = None
        state.publisher.start()
        log.info("Kafka producer started", bootstrap=state.settings.kafka_bootstrap)
        return


async def _probe_broker(state: IngressState, every: float = 5.0) -> None:
    """Keep /readyz honest when no pushes arrive: a metadata round trip tells whether Kafka answers."""
    while True:
        await asyncio.sleep(every)
        producer = state.producer
        if producer is None:
            continue
        try:
            async with asyncio.timeout(3.0):
                await producer.client.fetch_all_metadata()
            if not state.spool.has_backlog:
                state.publisher.broker_up = True
                state.publisher.broker_error = None
        except Exception as error:
            state.publisher.broker_up = False
            state.publisher.broker_error = repr(error)


def create_app(settings: IngressSettings, spool_dir: Path | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.ingress_max_body, handler_args={"max_field_size": 16384})
    app[SETTINGS] = settings
    state = IngressState(settings, spool_dir or Path(settings.ingress_spool_dir))
    app[STATE] = state
    add_notify_routes(app, settings.ingress_path_token)
    add_ops_routes(app, state.ready)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    try:
        state.spool.open()
        metrics.bind_spool(state.spool.state)
        if state.spool.pending_entries:
            log.info("spool holds pushes from a previous run, draining", entries=state.spool.pending_entries,
                     segments=len(state.spool.segments))
    except SpoolError as error:
        # Without a spool the ingress still serves while Kafka acknowledges; it answers 503 otherwise.
        log.error("spool unusable", error=str(error))
    starter = asyncio.create_task(_start_producer(state), name="producer-start")
    probe = asyncio.create_task(_probe_broker(state), name="broker-probe")
    # Serve as soon as the spool is ready: a push during Kafka's absence is spooled, not refused.
    yield
    for task in (starter, probe):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await state.publisher.stop()
    if state.producer is not None:
        with contextlib.suppress(Exception):
            await state.producer.stop()  # flushes what is still in flight
    await state.spool.close()
    log.info("ingress stopped", spool_entries=state.spool.pending_entries)
