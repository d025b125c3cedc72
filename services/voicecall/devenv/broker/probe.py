"""Is a Kafka broker up? ApiVersions, then Metadata, over a raw socket: no client library, no topic needed.
Which node leads the KRaft quorum (the active controller)? DescribeQuorum, the same way."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from typing import Protocol

from voicecall.runtime import config

_API_METADATA = 3
_API_VERSIONS = 18
_API_DESCRIBE_QUORUM = 55


class BrokerError(RuntimeError):
    """A broker could not be prepared, started or reached."""


class Polled(Protocol):
    def poll(self) -> int | None: ...


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes, *,
             flexible: bool = False) -> bytes:
    """One request; a ``flexible`` one (request header v2, response header v1) carries empty tagged fields."""
    client_id = b"voicecall-broker-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + (b"\x00" if flexible else b"") + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise BrokerError("Kafka response with a wrong correlation id")
    return response[4:] if not flexible else _skip_tagged_fields(response, 4)


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _skip_tagged_fields(data: bytes, offset: int) -> bytes:
    count, offset = _uvarint(data, offset)
    for _ in range(count):
        _tag, offset = _uvarint(data, offset)
        size, offset = _uvarint(data, offset)
        offset += size
    return data[offset:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    body = _request(sock, _API_VERSIONS, 0, 1, b"")
    error, count = struct.unpack(">hi", body[:6])
    if error != 0:
        raise BrokerError(f"ApiVersions error code {error}")
    versions = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
        versions[key] = (lo, hi)
    return versions


def _probe(host: str, port: int, timeout: float) -> int:
    """One ApiVersions + Metadata round trip; returns the number of brokers the cluster reports."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        versions = _api_versions(sock)
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


def active_controller(host: str, port: int, timeout: float = 5) -> int:
    """The node id of the KRaft quorum's leader, asked of the broker at ``host:port`` (which forwards a
    DescribeQuorum v0 to the controllers). Metadata's controller id is no help: KRaft brokers report a random
    broker there."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        lo, _hi = _api_versions(sock).get(_API_DESCRIBE_QUORUM, (1, 0))
        if lo != 0:
            raise BrokerError("the broker does not take DescribeQuorum v0")
        topic = b"__cluster_metadata"
        # topics[1]: name, partitions[1]: index 0 — compact arrays and strings are length + 1 as varints
        req = b"\x02" + bytes([len(topic) + 1]) + topic + b"\x02" + struct.pack(">i", 0) + b"\x00\x00\x00"
        body = _request(sock, _API_DESCRIBE_QUORUM, 0, 2, req, flexible=True)
    error = struct.unpack(">h", body[:2])[0]
    _topics, offset = _uvarint(body, 2)
    name_len, offset = _uvarint(body, offset)
    offset += name_len - 1
    _partitions, offset = _uvarint(body, offset)
    _index, part_error, leader = struct.unpack(">ihi", body[offset: offset + 10])
    if error or part_error or leader < 0:
        raise BrokerError(f"DescribeQuorum: error {error or part_error}, leader {leader}")
    return int(leader)


def wait_for_kafka(bootstrap: str, *, timeout: float = 90, processes: Sequence[Polled] = (),
                   brokers: int = 1) -> None:
    """Wait until a broker of ``bootstrap`` ("host:port[,host:port...]") answers a Metadata request listing
    at least ``brokers`` brokers. Raises :class:`BrokerError` on timeout or when one of ``processes`` exits
    first."""
    try:
        addresses = config.parse_bootstrap(bootstrap)
    except ValueError as error:
        raise BrokerError(f"bad bootstrap address: {error}") from None
    deadline = time.monotonic() + timeout
    last: str = "not tried"
    while True:
        for proc in processes:
            if (code := proc.poll()) is not None:
                raise BrokerError(f"the broker process exited with code {code}")
        for host, port in addresses:
            try:
                listed = _probe(host, port, timeout=5)
                if listed >= max(1, brokers):
                    return
                last = f"Metadata lists {listed} of {brokers} brokers"
            except (OSError, BrokerError, struct.error) as exc:
                last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka answer from {bootstrap} within {timeout:.0f}s (last: {last})")
        time.sleep(0.2)
