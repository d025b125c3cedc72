"""Kafka brokers for development and tests: a real Apache Kafka, noida-db, or an external cluster.

``start_broker(kind, state_dir=...)`` returns a :class:`BrokerHandle` once a real Kafka Metadata request to the
broker has succeeded:

``"apache"``
    Apache Kafka (KRaft, combined broker+controller nodes: one, or ``nodes`` voters of one cluster with
    replication 3 and min ISR 2 for the internal topics) assembled from Maven Central with
    ``deploy/dev/kafka/pom.xml`` (:mod:`.jars`, :mod:`.apache`). The version is the one in the pom (4.4.0): the
    newest release served, and tests/test_kafka_compat.py shows the project's aiokafka works against it
    (idempotent and transactional producers, groups, offsets_for_times, the admin calls we use) although Kafka 4
    dropped the oldest protocol versions (KIP-896).
``"noida"``
    The Kafka-protocol broker binary shipped in the ``noida-db`` wheel (:mod:`.noida`).
``"external"``
    An already running cluster at ``bootstrap``; ``stop()`` does nothing.
``"auto"``
    ``"apache"`` when there is a ``java`` and the jars are cached or can be fetched (with ``mvn``), otherwise
    ``"noida"``; the handle's ``fallback`` says why.

Everything a broker writes lives under ``state_dir``: starting again on the same ``state_dir`` (``restart()``,
or a new ``start_broker`` call) keeps the data and, unless another port is asked for, the port. Nothing here reads
the environment: ``voicecall broker`` and ``voicecall dev`` pass what their settings say.
"""

from __future__ import annotations

from pathlib import Path

from voicecall.devenv.broker.apache import java, start_apache
from voicecall.devenv.broker.handle import BrokerHandle
from voicecall.devenv.broker.jars import apache_kafka_version, ensure_kafka_jars
from voicecall.devenv.broker.noida import start_noida
from voicecall.devenv.broker.probe import BrokerError, wait_for_kafka

__all__ = [
    "KINDS",
    "BrokerError",
    "BrokerHandle",
    "apache_kafka_version",
    "ensure_kafka_jars",
    "start_broker",
    "wait_for_kafka",
]

KINDS = ("auto", "apache", "noida", "external")


def start_broker(
    kind: str = "auto",
    *,
    state_dir: Path,
    port: int | None = None,
    bootstrap: str | None = None,
    kafka_lib: Path | None = None,
    wait_timeout: float = 90,
    nodes: int = 1,
) -> BrokerHandle:
    """Start (or, for ``"external"``, reach ``bootstrap``) a Kafka broker; return once it answers Metadata requests
    (a cluster: once every node is listed).

    ``port`` is the client (PLAINTEXT) port on 127.0.0.1 (of the first node); by default the port of the previous
    run on this ``state_dir``, else a free one. ``kafka_lib`` holds the Apache Kafka jars (default
    deploy/dev/kafka/lib). ``nodes`` > 1 needs Apache Kafka (``"auto"`` then means ``"apache"``).
    Raises :class:`BrokerError` with the tail of the broker's log on failure.
    """
    if kind not in KINDS:
        raise BrokerError(f"unknown broker kind {kind!r}; expected one of {', '.join(KINDS)}")
    if nodes < 1:
        raise BrokerError(f"a cluster needs at least one node, not {nodes}")
    if nodes > 1 and kind in ("noida", "external"):
        raise BrokerError(f"{nodes} nodes: only the apache broker runs a local cluster")
    fallback = None
    if kind == "auto" and nodes > 1:
        kind = "apache"
    elif kind == "auto":
        fallback = _apache_missing(kafka_lib)
        kind = "noida" if fallback else "apache"
    if kind == "external":
        if not bootstrap:
            raise BrokerError("external broker: no bootstrap address given (VOICECALL_KAFKA_BOOTSTRAP)")
        return _reach(bootstrap, wait_timeout)
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if kind == "apache":
        return start_apache(state_dir=state_dir, port=port, kafka_lib=kafka_lib, wait_timeout=wait_timeout,
                            nodes=nodes)
    handle = start_noida(state_dir=state_dir, port=port, wait_timeout=wait_timeout)
    handle.fallback = fallback
    return handle


def _apache_missing(kafka_lib: Path | None) -> str | None:
    """Why Apache Kafka cannot run here (no java, the jars neither cached nor fetchable), or None when it can."""
    try:  # a JVM, and the jars (cached, or fetched once with mvn from Maven Central)
        java()
        ensure_kafka_jars(kafka_lib)
    except BrokerError as exc:
        return str(exc).removeprefix("apache broker: ")
    return None


def _reach(bootstrap: str, wait_timeout: float) -> BrokerHandle:
    wait_for_kafka(bootstrap, timeout=wait_timeout)
    return BrokerHandle(kind="external", bootstrap=bootstrap,
                        relaunch=lambda _port, timeout: _reach(bootstrap, timeout))
