"""Where recordings may be downloaded from: the host allowlist and the resolved-address check.

A URL is fetched only when its host matches ``VOICECALL_RECORDINGS_ALLOWED_HOSTS`` (exact names or ``*.suffix``
patterns) and every address it is connected to is public. Loopback, link-local (incl. the 169.254.169.254 metadata
endpoint), private, shared, reserved and other non-global addresses are refused unless the host or the address
itself is listed exactly — a wildcard never unlocks them. The address check runs in the connector's resolver, on
the addresses really connected to, so DNS answers cannot swap a public address for an internal one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddress(OSError):
    """Raised by the resolver; an OSError so aiohttp carries it inside ``ClientConnectorDNSError.os_error``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ip(value: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(value.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Exact names (case-insensitive, trailing dot ignored) or ``*.suffix`` (any depth, not the bare suffix)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().strip().rstrip(".")
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern or (_ip(host) is not None and _ip(host) == _ip(pattern)):
            return True
    return False


def explicitly_listed(host: str, patterns: Sequence[str]) -> bool:
    """The host appears as an exact entry (not via a wildcard): its internal addresses are then permitted."""
    return host_allowed(host, [p for p in patterns if "*" not in p])


def address_refusal(address: str, host: str, patterns: Sequence[str]) -> str | None:
    """Why connecting to ``address`` (resolved from ``host``) is refused, or None when it is fine."""
    ip = _ip(address)
    if ip is None:
        return f"unreadable address {address!r}"
    if ip.is_global and not ip.is_multicast:
        return None
    if explicitly_listed(host, patterns) or explicitly_listed(str(ip), patterns):
        return None
    if str(ip) in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"):
        kind = "metadata"
    elif ip.is_loopback:
        kind = "loopback"
    elif ip.is_link_local:
        kind = "link-local"
    elif ip.is_private:
        kind = "private"
    else:
        kind = "non-public"
    return f"{kind} address {ip} of {host}"


def url_refusal(url: URL | str, patterns: Sequence[str]) -> str | None:
    """Checks that need no DNS: scheme, host allowlist, and the address class of an IP-literal host."""
    url = URL(url) if isinstance(url, str) else url
    if url.scheme not in ("http", "https"):
        return f"scheme {url.scheme!r} not allowed"
    host = url.host
    if not host:
        return "no host in URL"
    if url.user or url.password:
        return "credentials in URL"
    if not host_allowed(host, patterns):
        return f"host {host} not in VOICECALL_RECORDINGS_ALLOWED_HOSTS"
    if _ip(host) is not None:
        return address_refusal(host, host, patterns)
    return None


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, (a.host or "").lower(), a.port) == (b.scheme, (b.host or "").lower(), b.port)


class SafeResolver(AbstractResolver):
    """Resolves like aiohttp's default and drops every address :func:`address_refusal` refuses."""

    def __init__(self, patterns: Sequence[str], inner: AbstractResolver | None = None) -> None:
        self._patterns = list(patterns)
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept, refusals = [], []
        for result in results:
            refusal = address_refusal(result["host"], host, self._patterns)
            if refusal is None:
                kept.append(result)
            else:
                refusals.append(refusal)
        if not kept:
            raise ForbiddenAddress("; ".join(refusals) or f"{host} resolved to nothing")
        return kept

    async def close(self) -> None:
        await self._inner.close()
