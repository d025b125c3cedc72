"""The ingress's Prometheus metrics. The per-push counts are :class:`Tally` (plain integers: the handlers, the
drainer and ``/metrics`` share the event loop thread); the histogram's label children are cached (``labels()`` per
request costs more than the observation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from voicecall.runtime.metrics import Tally

if TYPE_CHECKING:
    from voicecall.ingress.spool import Spool

REQUESTS = Tally("voicecall_ingress_requests_total", "HTTP requests by route and status", ["path", "status"])
DURABLE = Histogram("voicecall_ingress_durable_seconds", "push received → every record durable",
                    ["via"], buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5))
RECORDS = Tally("voicecall_ingress_records_published_total", "records acknowledged by Kafka, by topic", ["topic"])
SPOOLED = Counter("voicecall_ingress_spooled_pushes_total", "pushes written to the local spool")
SPOOL_DRAINED = Counter("voicecall_ingress_spool_drained_entries_total", "spool entries sent on to Kafka")
SPOOL_BYTES = Gauge("voicecall_ingress_spool_bytes", "bytes in the local spool")
SPOOL_SEGMENTS = Gauge("voicecall_ingress_spool_segments", "segment files in the local spool")
SPOOL_OLDEST = Gauge("voicecall_ingress_spool_oldest_age_seconds", "age of the oldest undrained spool segment")
DEADLETTER = Counter("voicecall_ingress_deadletter_total", "pushes kept in deadletter, by reason", ["reason"])
BROKER_ERRORS = Counter("voicecall_ingress_broker_errors_total", "Kafka sends that failed or missed the deadline")
UNAVAILABLE = Counter("voicecall_ingress_unavailable_total", "pushes answered 503 (Kafka and spool unusable)")
HEADER_TIMEOUTS = Counter("voicecall_ingress_header_timeouts_total",
                          "connections cut off for not sending request headers within the header timeout")
QUARANTINED = Counter("voicecall_ingress_spool_quarantined_records_total",
                      "spooled records Kafka refuses for good, moved to the quarantine file", ["reason"])
QUARANTINE_RECORDS = Gauge("voicecall_ingress_spool_quarantine_records",
                           "records in the spool's quarantine file, waiting for a human")
# Counted per push on the event loop's thread: plain-integer tallies (a Counter's lock costs more than the count).
SIGNATURES = Tally("voicecall_ingress_signature_total", "pushes by X-AKSK signature outcome (valid, absent, "
                   "invalid:<check>, unchecked)", ["outcome"])
SIGNATURES_VALID = Tally("voicecall_ingress_signature_valid_total", "valid pushes by the digest's message form "
                         "(newline, concat) and how Created was read (utc, beijing)", ["form", "created"])
NONCE_EVICTIONS = Tally("voicecall_ingress_signature_nonce_evictions_total",
                        "nonces forgotten before their window ended because the cache was full")
SIGNATURE_MODE = Gauge("voicecall_ingress_signature_mode", "1 for the VOICECALL_INGRESS_SIGNATURE mode in use",
                       ["mode"])
NONCES = Gauge("voicecall_ingress_signature_nonces", "nonces remembered to catch replayed pushes")

_requests: dict[tuple[str, int], tuple[str, str]] = {}
_durable: dict[str, Histogram] = {}


def count_request(path: str, status: int) -> None:
    labels = _requests.get((path, status))
    if labels is None:
        labels = _requests[(path, status)] = (path, str(status))
    REQUESTS.add(labels)


def count_record(topic: str, n: int = 1) -> None:
    RECORDS.add((topic,), n)


def observe_durable(via: str, seconds: float) -> None:
    child = _durable.get(via)
    if child is None:
        child = _durable[via] = DURABLE.labels(via)
    child.observe(seconds)


def bind_spool(spool: Spool) -> None:
    """Spool gauges read the live spool at scrape time, each only what it shows."""
    SPOOL_BYTES.set_function(lambda: float(spool.total_bytes))
    SPOOL_SEGMENTS.set_function(lambda: float(len(spool.segments)))
    SPOOL_OLDEST.set_function(lambda: round(spool.oldest_age(), 3))
    QUARANTINE_RECORDS.set_function(lambda: float(spool.quarantine.count()))
