"""Is a Kafka broker up? ApiVersions, then Metadata, over a raw socket: no client library, no topic needed."""

from __future__ import annotations

import socket
import struct
import time
from typing import Protocol

from voicecall.runtime import config

_API_METADATA = 3
_API_VERSIONS = 18


class BrokerError(RuntimeError):
    """A broker could not be prepared, started or reached."""


class Polled(Protocol):
    def poll(self) -> int | None: ...


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"voicecall-broker-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise BrokerError("Kafka response with a wrong correlation id")
    return response[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _probe(host: str, port: int, timeout: float) -> int:
    """One ApiVersions + Metadata round trip; returns the number of brokers the cluster reports."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _request(sock, _API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack(">hi", body[:6])
        if error != 0:
            raise BrokerError(f"ApiVersions error code {error}")
        versions = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
            versions[key] = (lo, hi)
        if _API_METADATA not in versions:
            raise BrokerError("the broker does not support Metadata requests")
        lo, hi = versions[_API_METADATA]
        # v4..v8 share the non-flexible encoding handled here; Kafka 4 supports 0..13, noida its own range
        version = max(lo, min(hi, 4))
        if not 1 <= version <= 8:
            raise BrokerError(f"no Metadata version this probe speaks (broker offers v{lo}..v{hi})")
        req = struct.pack(">i", -1 if version >= 1 else 0)  # all topics (null array)
        if version >= 4:
            req += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            req += b"\x00\x00"  # include cluster/topic authorized operations
        body = _request(sock, _API_METADATA, version, 2, req)
        offset = 4 if version >= 3 else 0  # throttle_time_ms
        return int(struct.unpack(">i", body[offset: offset + 4])[0])


def wait_for_kafka(bootstrap: str, *, timeout: float = 90, process: Polled | None = None) -> None:
    """Wait until a broker of ``bootstrap`` ("host:port[,host:port...]") answers a Metadata request listing
    at least one broker. Raises :class:`BrokerError` on timeout or when ``process`` exits first."""
    try:
        addresses = config.parse_bootstrap(bootstrap)
    except ValueError as error:
        raise BrokerError(f"bad bootstrap address: {error}") from None
    deadline = time.monotonic() + timeout
    last: str = "not tried"
    while True:
        if process is not None and (code := process.poll()) is not None:
            raise BrokerError(f"the broker process exited with code {code}")
        for host, port in addresses:
            try:
                if _probe(host, port, timeout=5) > 0:
                    return
                last = "Metadata lists no brokers yet"
            except (OSError, BrokerError, struct.error) as exc:
                last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka answer from {bootstrap} within {timeout:.0f}s (last: {last})")
        time.sleep(0.2)
