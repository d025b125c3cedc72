"""The ingress's HTTP connections: request headers bounded in time, and every error answered as the contract says.

aiohttp bounds a connection's idle time (keep-alive) but not the time a client takes to send its request headers: a
client sending one byte a second holds its connection until the keep-alive timeout (75 s by default). Here each
request's headers must be complete within ``VOICECALL_INGRESS_HEADER_TIMEOUT`` of their first byte (of the
connection's start, for its first request); a client that is slower is answered ``408`` and cut off. The check
costs one clock read per request: one timer per connection wakes up at most once per header timeout.

aiohttp answers malformed HTTP and its own failures with text bodies (``handle_error``): each such answer is
rewritten here to the contract's JSON ``{"resultcode": "1", "resultdesc": …}`` with the same status; unknown paths and
methods reach :func:`fallback`, which answers 404 and 405 the same way.

Both hook into aiohttp's ``RequestHandler`` (the connection protocol), which has no public extension point for them;
the hooks are synchronous (no extra coroutine per request) and cost a few attribute reads per request.

A push (a POST to a path in ``app[DIRECT]``, without ``Expect``) goes straight to its handler: the app's router,
match info and ``on_response_prepare`` signal cost ~15 % of a bare aiohttp request's CPU here, ~6 % of a push's
(bench/RESULTS.md).
The notify routes stay in the router too, which serves every other request to them (405, ``Expect``, a query).
Its ``200`` on a keep-alive HTTP/1.1 connection is written as prebuilt bytes (:class:`Written`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import HttpVersion11, hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from voicecall.ingress import metrics

_TIMEOUT_BODY = b'{"resultcode":"1","resultdesc":"request headers not received in time"}'
HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.RETRY_AFTER)
DIRECT = web.AppKey("direct", dict[str, Handler])  # path → handler of the POSTs served without the router


class Written:
    """A push's ``200`` on a keep-alive HTTP/1.1 connection, written as one prebuilt byte string.

    What aiohttp's connection asks of a response is ``prepare``, ``write_eof`` and ``keep_alive``, and ``status``
    for a trace; the ingress has no access log, which would read more. The bytes are those of ``web.Response``
    (status line, Content-Type, Content-Length, Date, Server, body; a test compares them), written by the request's
    own payload writer (its closed-connection check, its drain): building and serialising the headers cost 25–30 µs
    of a push (bench/RESULTS.md).
    """

    __slots__ = ("_request",)
    keep_alive = True
    status = 200

    def __init__(self, request: BaseRequest) -> None:
        self._request = request

    async def prepare(self, request: BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        await self._request.writer.write_eof(_ok_bytes())


OK_BODY = b'{"resultcode":"0","resultdesc":"Success"}'
OK_TYPE = "application/json; charset=UTF-8"
_OK_HEAD = f"HTTP/1.1 200 OK\r\nContent-Type: {OK_TYPE}\r\nContent-Length: {len(OK_BODY)}\r\nDate: ".encode()
_OK_TAIL = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode() + OK_BODY
_ok_date, _ok_data = "", b""


def _ok_bytes() -> bytes:
    """The 200's bytes, made again when aiohttp's Date (formatted once a second) changes."""
    global _ok_date, _ok_data
    date = rfc822_formatted_time()
    if date != _ok_date:
        _ok_date, _ok_data = date, _OK_HEAD + date.encode() + _OK_TAIL
    return _ok_data


def ok(request: web.Request) -> web.StreamResponse:
    """The contract's ``200``: prebuilt on a keep-alive HTTP/1.1 connection, else a ``web.Response`` (which says
    ``Connection: close`` or ``keep-alive`` as the request needs)."""
    if request.version == HttpVersion11 and request.keep_alive:
        return Written(request)  # type: ignore[return-value]  # quacks like one (see Written)
    return web.Response(body=OK_BODY, headers={hdrs.CONTENT_TYPE: OK_TYPE})


def answer(status: int, detail: str, **headers: str) -> web.Response:
    """An error answer of the contract: ``{"resultcode": "1", "resultdesc": detail}``."""
    return web.Response(status=status, content_type="application/json", headers=headers,
                        body=orjson.dumps({"resultcode": "1", "resultdesc": detail}))


def json_error(response: web.StreamResponse) -> web.Response:
    """``response`` (an error aiohttp made) with the contract's JSON body instead of its text."""
    text = response.text if isinstance(response, web.Response) and response.status < 500 else None
    detail = (text or response.reason or "error").strip()[:200]
    json = answer(response.status, detail,
                  **{name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers})
    if response.keep_alive is False:
        json.force_close()
    return json


CUT_OFF_GRACE = 1.0  # after the 408: the client reads it and the FIN before the socket closes (not a reset)


class Protocol(RequestHandler):
    __slots__ = ("_between", "_header_since", "_header_timeout", "_header_timer")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_since: float | None = None  # when the first byte of the awaited headers came
        self._between = True  # no request is being received or handled: the next bytes start one
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        now = self._loop.time()
        self._header_since = now  # a connection that sends nothing at all is cut off just the same
        self._header_timer = self._loop.call_at(now + self._header_timeout, self._check_headers)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._between and self._header_since is None:
            self._header_since = self._loop.time()
        super().data_received(data)
        if self._messages:  # the headers are complete (or unparseable, and answered 400)
            self._between = False
            self._header_since = None

    def log_access(self, request: BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        # Called once a response is written: the next bytes start the next request.
        self._between = not self._messages
        self._header_since = None
        if self._logging_enabled:
            super().log_access(request, response, time)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        return json_error(super().handle_error(request, status, exc, message))

    def _check_headers(self) -> None:
        now = self._loop.time()
        since = self._header_since
        if since is not None and now - since >= self._header_timeout and not self._request_in_progress:
            metrics.HEADER_TIMEOUTS.inc()
            self.close()  # no more requests on this connection: whatever else comes is read and dropped
            transport = self.transport  # no isinstance: uvloop's transports are not asyncio.Transport subclasses
            if transport is not None:
                transport.write(HEADER_TIMEOUT_RESPONSE)
                if transport.can_write_eof():
                    transport.write_eof()
            self._header_timer = self._loop.call_later(CUT_OFF_GRACE, self.force_close)
            return
        due = since + self._header_timeout if since is not None and now < since + self._header_timeout else \
            now + self._header_timeout
        self._header_timer = self._loop.call_at(due, self._check_headers)


class Server(web.Server):
    """aiohttp's server, making :class:`Protocol` connections."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return Protocol(self, header_timeout=self.header_timeout, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` serving the app with :class:`Server`."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        handler: Any = plain.request_handler
        if direct := self.app.get(DIRECT):
            handler = _dispatch(direct, handler)
        return Server(handler, request_factory=plain.request_factory,
                      handler_cancellation=plain.handler_cancellation, loop=plain._loop,
                      header_timeout=self.header_timeout, **plain._kwargs)


def _dispatch(direct: dict[str, Handler], routed: Handler) -> Handler:
    async def handle(request: BaseRequest) -> web.StreamResponse:
        if request.method == hdrs.METH_POST and hdrs.EXPECT not in request.headers:
            handler = direct.get(request.raw_path)
            if handler is not None:
                return await handler(request)  # type: ignore[arg-type]  # a web.Request: the app's request factory
        return await routed(request)  # type: ignore[arg-type]

    return handle


def expect_handler(limit: int) -> Any:
    """``Expect: 100-continue``: no ``100 Continue`` for a body announced over ``limit`` — the handler answers
    ``413`` at once instead of waiting for a body it would refuse."""

    async def handle(request: web.Request) -> web.Response | None:
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11 or not expect:
            return None
        if expect.lower() != "100-continue":
            return answer(417, f"unknown Expect: {expect[:64]}")
        length = request.content_length
        if length is None or length <= limit:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    return handle


async def fallback(request: web.Request) -> web.Response:
    """Every request no route takes: 405 (with ``Allow``) on a path that exists, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        return answer(405, f"{request.method} is not allowed here", Allow=", ".join(sorted(allowed)))
    return answer(404, "no such path")
