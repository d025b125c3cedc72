"""Ingress fixtures on the shared session broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingress_helpers import Ingress, ingress_settings, running_ingress


@pytest.fixture
async def ingress(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Ingress]:
    async with running_ingress(ingress_settings(kafka_bootstrap, tmp_path / "spool")) as served:
        yield served


@pytest.fixture
def post() -> Callable[..., Any]:
    async def _post(url: str, body: bytes | str | dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
        import orjson

        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else orjson.dumps(body))
        async with aiohttp.ClientSession() as session, session.post(url, data=data, **kwargs) as response:
            text = await response.read()
            try:
                return response.status, orjson.loads(text)
            except orjson.JSONDecodeError:
                return response.status, text

    return _post
