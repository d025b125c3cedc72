"""The notify handlers: who is asking, read the body, parse, make the records durable, answer.

The request path is the product (its CPU per push sets the ingress's rate: bench/RESULTS.md): no access log, no
per-push log line above debug, one shared producer, metric label children cached, ids and times made without
``uuid``/``datetime``, the ``200`` written as prebuilt bytes (``server.ok``).
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from voicecall import huawei
from voicecall.ingress import metrics
from voicecall.ingress.body import Undecodable, decode, read_body
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.gate import Gate
from voicecall.ingress.parse import Outcome, Parser
from voicecall.ingress.publisher import Publisher, Unavailable
from voicecall.ingress.server import answer, ok
from voicecall.runtime import logging as vlog, times, tracing
from voicecall.runtime.deadletter import Reason

log = vlog.get("ingress")


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


class Notify:
    """What the notify handlers share: client filter, signature gate, parser, clock, push ids, and the publisher."""

    def __init__(self, settings: IngressSettings, publisher: Publisher) -> None:
        self.parser = Parser(settings, publisher.limits)
        self.gate = Gate(settings)
        self.publisher = publisher
        self.clock = times.Clock()
        self.clients = ClientFilter(settings.ingress_allow, settings.ingress_trusted_proxies)
        self.boot = os.urandom(6).hex()
        self.counter = 0
        self.max_body = settings.ingress_max_body
        self.read_timeout = settings.ingress_read_timeout

    def push_id(self) -> str:
        self.counter += 1
        return f"{self.boot}-{self.counter:x}"

    def outcome(self, body: bytes, fits: bool, coding: str | None, request: web.Request, origin: dict[str, Any],
                received: str, push_id: str) -> Outcome:
        """What a body read (``fits``: within the limit) turns into: decoded, then parsed or rejected."""
        if coding is not None and fits:
            try:
                body, fits = decode(body, coding, self.max_body)
            except Undecodable as error:
                origin["content_encoding"] = coding[:100]
                return self.parser.reject(body, error.reason, error.detail, origin, received, push_id,
                                          status=error.status)
        if fits:
            return self.parser.parse(body, received=received, push_id=push_id, origin=origin)
        detail = f"body over {self.max_body} bytes"
        if coding is not None:
            origin["content_encoding"] = coding[:100]
        if request.content_length is not None:
            origin["content_length"] = request.content_length
            if not body:
                detail += " (announced by Content-Length, not read: the client waited for 100 Continue)"
        return self.parser.reject(body, Reason.TOO_LARGE, detail, origin, received, push_id, status=413)


def make_handler(notify: Notify, route: str, path: str, path_label: str) -> Handler:
    """The handler of the notify path ``path``; ``path_label`` is what logs and deadletter records show of it."""
    gate = notify.gate
    signed_url = gate.signed_url(path)

    async def handle(request: web.Request) -> web.StreamResponse:
        if tracing.ACTIVE:
            return await traced(request)
        return await serve(request)

    async def traced(request: web.Request) -> web.StreamResponse:
        span = tracing.server_span(request.headers, request.method, path_label)
        with tracing.current(span):
            response = await serve(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            tracing.fail(span, f"HTTP {response.status}")
        span.end()
        return response

    async def serve(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        client = notify.clients.client(request)
        if not notify.clients.allowed(client):
            log.info("client not allowed", client=client, path=path_label)
            metrics.count_request(route, 403)
            return answer(403, "client not allowed")
        verdict = gate.check(request, signed_url, path)  # from the headers alone
        try:
            body, fits = await read_body(request, notify.max_body, notify.read_timeout)
        except TimeoutError:
            metrics.count_request(route, 408)
            late = answer(408, "body not received in time")
            late.force_close()
            return late
        origin: dict[str, Any] = {"path": path_label, "client": client}
        if gate.refuses(verdict):  # enforce: kept in deadletter as received, no decoding or parsing
            outcome = gate.refusal(notify.parser, verdict, body, origin, notify.clock.now(), notify.push_id())
        else:
            outcome = notify.outcome(body, fits, request.headers.get(hdrs.CONTENT_ENCODING), request, origin,
                                     notify.clock.now(), notify.push_id())
        gate.stamp(outcome.records, verdict)
        if tracing.ACTIVE:
            tracing.push_records(outcome.records, outcome.session_ids)
        try:
            via = await notify.publisher.publish(outcome.records)
        except Unavailable as error:
            gate.forget(verdict)
            metrics.UNAVAILABLE.inc()
            metrics.count_request(route, 503)
            log.error("push not durable, answering 503", error=str(error), event_type=outcome.event_type,
                      session_ids=outcome.session_ids[:5])
            return answer(503, "temporarily unavailable", **{"Retry-After": "5"})
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
            return ok(request)
        refusal = _refusal(outcome)
        if not fits:
            refusal.force_close()  # a 401 before the whole body came: the rest is not worth reading either
        return refusal

    return handle


def _refusal(outcome: Outcome) -> web.Response:
    response = answer(outcome.status, outcome.detail)
    if outcome.status == 415:
        response.headers[hdrs.ACCEPT_ENCODING] = "gzip, deflate"
    elif outcome.status == 401:
        response.headers[hdrs.WWW_AUTHENTICATE] = huawei.AUTHORIZATION
    elif outcome.status == 413:
        response.force_close()  # the rest of the body is not worth reading (nor waiting for)
    return response


def _log_rejection(outcome: Outcome, origin: dict[str, Any], via: str) -> None:
    log.info("push kept in deadletter", status=outcome.status, reason=outcome.reason, detail=outcome.detail[:200],
             event_type=outcome.event_type, path=origin["path"], client=origin["client"], via=via)
