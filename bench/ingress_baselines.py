"""Baselines for ``bench/ingress.py``, each one aiohttp process on uvloop with the access log off.

``bare``  — read the body, ``orjson.loads`` it, answer 200: the ceiling of any aiohttp ingress.
``naive`` — the same plus one aiokafka ``send_and_wait`` per ``feeLst`` record (acks=all, idempotent), awaited in
turn before answering: what a first version would do, without validation, headers, metrics or a spool.

    python bench/ingress_baselines.py bare|naive PORT [BOOTSTRAP TOPIC]
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvloop
from aiohttp import web
from aiokafka import AIOKafkaProducer

OK = b'{"resultcode":"0","resultdesc":"Success"}'


def bare_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.Response(body=OK, content_type="application/json")

    app = web.Application()
    app.router.add_post("/notify/fee", handle)
    app.router.add_post("/notify/status", handle)
    return app


def naive_app(bootstrap: str, topic: str) -> web.Application:
    producer: AIOKafkaProducer

    async def handle(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        for record in doc.get("feeLst") or [doc.get("statusInfo")]:
            await producer.send_and_wait(topic, orjson.dumps(record), key=record["sessionId"].encode())
        return web.Response(body=OK, content_type="application/json")

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        nonlocal producer
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
        await producer.start()
        yield
        await producer.stop()

    app = web.Application()
    app.router.add_post("/notify/fee", handle)
    app.router.add_post("/notify/status", handle)
    app.cleanup_ctx.append(lifecycle)
    return app


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = bare_app() if kind == "bare" else naive_app(sys.argv[3], sys.argv[4])
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
