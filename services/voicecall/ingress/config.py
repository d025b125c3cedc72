"""Settings of the ingress (``VOICECALL_INGRESS_*``) on top of the shared ones."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from voicecall.apps import AppsSettings
from voicecall.runtime.config import CommaList, Duration, Size


class IngressSettings(AppsSettings):
    ingress_host: str = Field("0.0.0.0", description="listen address")
    ingress_port: int = Field(8080, ge=0, le=65535, description="listen port (also /metrics, /healthz, /readyz)")
    ingress_path_token: str | None = Field(None, pattern=r"^[A-Za-z0-9._~-]{8,256}$", repr=False,
                                           description="when set, the notify paths exist only under "
                                                       "/notify/{token}/...; others answer 404 (never logged)")
    ingress_max_body: Size = Field(1 << 20, ge=1024, description="largest push body, as received and once decoded "
                                   "(gzip, deflate); larger, or a record larger than the broker takes: 413")
    ingress_ack_deadline: Duration = Field(2.0, gt=0, description="how long a push waits for every Kafka "
                                                                  "acknowledgement before it goes to the spool")
    # 0: the pushes of one loop iteration share a batch, and later ones fill the next while it waits for the
    # broker's request in flight; 1 ms added ~0.8 ms to the p50 at half rate and saved no CPU (bench/RESULTS.md).
    ingress_linger_ms: int = Field(0, ge=0, le=2, description="producer linger.ms")
    ingress_read_timeout: Duration = Field(
        10.0, gt=0, description="how long a request's body may take to arrive once its headers have; then 408")
    ingress_header_timeout: Duration = Field(
        10.0, gt=0, description="how long a request's headers may take to arrive, from their first byte (from the "
        "connection's start for its first request); a slower client is answered 408 and cut off")
    ingress_keepalive_timeout: Duration = Field(
        75.0, ge=0, description="how long an idle keep-alive connection is kept open; longer than the proxy's own "
        "upstream keep-alive (60 s on ingress-nginx), so the proxy closes first")
    ingress_shutdown_timeout: Duration = Field(30.0, ge=0, description="on SIGTERM, how long requests in flight "
                                                                       "may take to finish")
    ingress_allow: CommaList = Field(default_factory=list, description="CIDRs that may push, comma-separated "
                                                                       "(empty: everyone)")
    ingress_trusted_proxies: CommaList = Field(default_factory=list, description="CIDRs of proxies whose "
                                               "X-Forwarded-For is believed for VOICECALL_INGRESS_ALLOW")
    ingress_spool_dir: str = Field(".state/spool", description="where pushes are kept (fsync'd) while Kafka is "
                                                               "away; one folder (w0, w1, ...) per worker")
    ingress_spool_max_bytes: Size = Field(1 << 30, ge=1 << 16, description="spool size limit; beyond it, with "
                                                                           "Kafka away, pushes answer 503")
    ingress_spool_segment_bytes: Size = Field(16 << 20, ge=1 << 12, description="size of one spool file")
    ingress_workers: int = Field(1, ge=1, le=64, description="processes sharing the port (SO_REUSEPORT)")
    ingress_signature: Literal["off", "log", "enforce"] = Field(
        "log", description="X-AKSK push signatures: off (not checked), log (checked, every push processed), enforce "
        "(a push whose signature is not valid is answered 401 and kept in deadletter)")
    # Below 4 h: the two readings of Created (UTC and Beijing time, 8 h apart) must not overlap.
    ingress_signature_skew: Duration = Field(
        300.0, gt=0, lt=4 * 3600, description="how far a push's Created may be from the ingress clock")
    ingress_signature_nonces: int = Field(
        100_000, ge=100, le=10_000_000, description="the most nonces remembered to catch replays (each kept twice "
        "the skew); more evicts the oldest and counts voicecall_ingress_signature_nonce_evictions_total")
    ingress_public_url: str | None = Field(
        None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$", description="scheme://host[:port] of the push URLs as "
        "registered with Huawei (before any proxy); the request's path is appended to make the signed URL. Unset: "
        "the URL the request arrived on")
    ingress_worker: bool = Field(False, description="internal: set by the --workers parent for its workers")

    @field_validator("ingress_allow", "ingress_trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError with a clear message
        return value
