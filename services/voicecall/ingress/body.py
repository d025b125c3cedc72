"""Reading a push's body: bounded in size and in time, and decoded per ``Content-Encoding``.

The platform sends plain bodies; a proxy in front may compress them. ``gzip`` (``x-gzip``) and ``deflate`` (zlib or
raw) are decoded with the size limit applied to the *decoded* bytes, so a small body that expands a thousandfold is
answered ``413`` after at most ``limit`` bytes of output; a body that does not decode is answered ``400``, any other
coding ``415`` — each kept in deadletter like any other rejected push (aiohttp's own decoding, which answered
``500`` or a text ``413`` and kept nothing, is switched off).
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import hdrs, web

from voicecall.runtime.deadletter import Reason

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Undecodable(Exception):
    """The body cannot be decoded: ``status`` 400 (broken) or 415 (a coding the ingress does not read)."""

    def __init__(self, reason: Reason, detail: str, status: int) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.status = reason, detail, status


async def read_body(request: web.Request, limit: int, timeout: float) -> tuple[bytes, bool]:
    """The body and whether it fits; an oversized one is read only a little past ``limit`` (for deadletter), and
    not at all when the client waits for ``100 Continue`` (it is answered ``413`` at once)."""
    length = request.content_length
    if length is not None and length <= limit:
        if request.content.at_eof() or request.content.total_bytes >= length:
            return await request.read(), True
        async with asyncio.timeout(timeout):
            return await request.read(), True
    if length is not None and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        return b"", False
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


def decode(body: bytes, codings: str, limit: int) -> tuple[bytes, bool]:
    """``body`` decoded per a ``Content-Encoding`` value (codings applied in order, so decoded in reverse) and
    whether the result fits ``limit``; past it, only ``limit + 1`` bytes are made. Raises :class:`Undecodable`."""
    for coding in reversed([c.strip().lower() for c in codings.split(",") if c.strip()]):
        if coding == "identity":
            continue
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise Undecodable(Reason.UNSUPPORTED_ENCODING, f"Content-Encoding {coding[:40]!r} is not supported "
                              "(gzip, deflate or identity)", 415)
        try:
            body, fits = _inflate(body, wbits, limit)
        except zlib.error as error:
            if coding != "deflate":
                raise Undecodable(Reason.BAD_ENCODING, f"body is not valid {coding}: {error}", 400) from None
            try:  # "deflate" is zlib-wrapped by the standard; some clients send it raw
                body, fits = _inflate(body, -zlib.MAX_WBITS, limit)
            except zlib.error as raw_error:
                raise Undecodable(Reason.BAD_ENCODING, f"body is not valid deflate: {raw_error}", 400) from None
        if not fits:
            return body, False
    return body, True


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, bool]:
    out: list[bytes] = []
    size = 0
    while True:  # gzip allows several members one after the other
        stream = zlib.decompressobj(wbits)
        chunk = stream.decompress(data, limit + 1 - size)
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(out), False
        if not stream.eof:
            raise zlib.error("the compressed body ends early")
        data = stream.unused_data
        if not data or wbits != _WBITS["gzip"]:
            if data:
                raise zlib.error(f"{len(data)} bytes after the end of the compressed body")
            return b"".join(out), True
