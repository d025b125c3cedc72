"""A tiny push receiver for the simulator tests: records every push and answers by a rule of the test's choosing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiohttp import web

START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
SUCCESS = {"resultcode": "0", "resultdesc": "Success"}


@dataclass
class Push:
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        return orjson.loads(self.body)  # type: ignore[no-any-return]


# rule(path, number of this push on that path starting at 1, body) → (HTTP status, answer JSON or None)
Rule = Callable[[str, int, bytes], tuple[int, dict[str, str] | None]]


def always(status: int = 200, answer: dict[str, str] | None = None) -> Rule:
    return lambda path, number, body: (status, SUCCESS if answer is None and status == 200 else answer)


@dataclass
class Receiver:
    rule: Rule = field(default_factory=always)
    pushes: list[Push] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.pushes.append(Push(request.path, body, dict(request.headers)))
        number = sum(1 for push in self.pushes if push.path == request.path)
        status, answer = self.rule(request.path, number, body)
        return web.Response(status=status, body=orjson.dumps(answer) if answer is not None else b"",
                            content_type="application/json")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def status_url(self) -> str:
        return self.base_url + "/notify/status"

    @property
    def fee_url(self) -> str:
        return self.base_url + "/notify/fee"

    def on(self, path: str) -> list[Push]:
        return [push for push in self.pushes if push.path == path]
