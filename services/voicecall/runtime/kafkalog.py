"""aiokafka's broker trouble, logged the way an operator acts on it.

aiokafka logs an ERROR or WARNING for every retry while a broker is away (``Unable connect to node with id 2``,
``Failed fetch messages from 2``, …): hundreds per outage and process, for an event every client here handles by
retrying. :class:`BrokerWatch`, a filter on the one log handler, turns them into state changes per broker:

- ``Kafka broker unreachable, retrying`` (WARNING) on the first of them, with aiokafka's message;
- ``Kafka broker still unreachable`` (WARNING) at most once a minute while it lasts, with how many were folded in;
- ``Kafka broker reachable again`` (WARNING) once a client of the process has a connection to it, a second or more
  after the last error, with the count and how long it lasted. That is seen by wrapping
  ``AIOKafkaClient._get_conn`` (aiokafka logs no success); a broker no client needs any more is not seen again.

``NotEnoughReplicasError`` on a produce is retried by aiokafka. A partition with fewer in-sync replicas than its
``min.insync.replicas`` answers it, and so does a transactional write the broker could not yet verify as part of
its transaction (Kafka's transaction verification, KIP-890, reports the coordinator's "concurrent transactions" so
to clients of aiokafka's protocol version). Both pass in moments: DEBUG, with that explanation, unless one
partition keeps answering it for :data:`REPLICAS_PATIENCE` seconds, then a WARNING (again at most once a minute).
A routine rebalance notice becomes DEBUG. Every other aiokafka message passes unchanged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

REMIND_EVERY = 60.0
QUIET = 1.0  # seconds without an error before a connection counts as the broker being back
REPLICAS_PATIENCE = 30.0
_EPISODE_GAP = 10.0  # NotEnoughReplicas again after this long starts a new episode

# aiokafka 0.14's messages about a request to a broker that failed (and will be tried again), by format string → the
# index of the argument naming the broker's node id; None: the node id or address is looked for in the message. One
# whose error says the broker answered (a leader or coordinator moved), or that names no broker, is routine.
TROUBLE: dict[str, int | None] = {
    "Unable connect to node with id %s: %s": 0,
    'Unable connect to "%s:%s": %s': None,
    "Unable to request metadata from node with id %s: %r": 0,
    'Unable to request metadata from "%s:%s": %s': None,
    "Failed fetch messages from %s: %s": 0,
    "Failed fetch offsets from %s: %s": 0,
    "Cannot send %r to %s: %r": 1,
    "Could not send %r: %r": None,
    "Got error produce response: %s": None,
    "FindCoordinator Request failed: %s": None,
    "Group Coordinator Request failed: %s": None,
    "Error sending %s to node %s [%s] -- marking coordinator dead": 1,
    "Heartbeat send request failed: %s. Will retry.": None,
}
# What follows from the above or from a routine coordinator move or rebalance; each is retried.
ROUTINE = frozenset({
    "Unable to update metadata from %s",
    "Marking the coordinator dead (node %s)for group %s.",
    "Heartbeat failed for group %s: coordinator (node %s) is either not started or not valid",
    "Heartbeat failed for group %s because it is rebalancing",
    # no heartbeat answered for a session timeout (its coordinator's broker is gone): it looks for the coordinator
    # again; a membership really lost shows as the stage's own "partitions revoked"
    "Heartbeat session expired - marking coordinator dead",
})
RETRIED_PRODUCE = "Got error produce response on topic-partition %s, retrying. Error: %s"
REPLICAS_EXPLAINED = ("the partition has fewer in-sync replicas than min.insync.replicas, or (a transactional "
                      "write) the broker could not yet verify the partition is in the transaction while the "
                      "transaction coordinator updates it; aiokafka retries, nothing is lost")

REPLICAS_HINT = "fewer in-sync replicas than min.insync.replicas for that long: check the brokers"

# what aiokafka's and the OS's errors say when a broker could not be talked to at all
_UNREACHABLE = re.compile(r"connect|Connection|NodeNotReady|not ready|Errno|timed out|Timeout|refused|reset by peer|"
                          r"closed|broken|unreachable|No route", re.IGNORECASE)
_NODE_ID = re.compile(r"node(?: with)?(?: id)? (\d+)")
# host:port, or ('host', port) as a socket error prints it
_ADDRESS = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]|localhost|[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+)"
                      r"(?::|',\s*)(\d{1,5})\b")


@dataclass
class _Outage:
    since: float
    last: float
    errors: int = 1
    reminded: float = 0.0


@dataclass
class _Episode:
    since: float
    last: float
    retries: int = 0
    warned: float = 0.0


class BrokerWatch(logging.Filter):
    """The handler filter (see the module docstring); one per process, shared by every client."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.down: dict[str, _Outage] = {}
        self.addresses: dict[str, str] = {}  # "host:port" → node id, learnt from the first connection to each
        self.known: set[Any] = set()  # node ids connected to at least once
        self.retried: dict[str, _Episode] = {}

    @property
    def log(self) -> Any:
        return structlog.get_logger("kafka")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or not isinstance(record.msg, str):
            return True
        if record.msg in TROUBLE:
            message = record.getMessage()
            broker = self._broker(record) if _UNREACHABLE.search(message) else None
            if broker is not None:
                self.trouble(broker, message)
            else:  # the broker answered (a leader or coordinator moved): aiokafka retries
                self.log.debug("Kafka request retried", error=message[:300])
            return False
        if record.msg == RETRIED_PRODUCE and record.args:
            return self._retried(record)
        return record.msg not in ROUTINE

    # -- connections ----------------------------------------------------------------------------------------

    def _broker(self, record: logging.LogRecord) -> str | None:
        index = TROUBLE[str(record.msg)]
        args = record.args if isinstance(record.args, tuple) else ()
        if index is not None and index < len(args):
            return str(args[index])
        text = record.getMessage()
        if match := _NODE_ID.search(text):
            return match.group(1)
        if match := _ADDRESS.search(text):
            address = f"{match.group(1)}:{match.group(2)}"
            return self.addresses.get(address, address)
        return None

    def trouble(self, broker: str, message: str) -> None:
        now = self.clock()
        outage = self.down.get(broker)
        if outage is None:
            self.down[broker] = _Outage(now, now, reminded=now)
            self.log.warning("Kafka broker unreachable, retrying", broker=broker, error=message[:300])
            return
        outage.errors += 1
        outage.last = now
        if now - outage.reminded >= REMIND_EVERY:
            outage.reminded = now
            self.log.warning("Kafka broker still unreachable", broker=broker, seconds=round(now - outage.since),
                             errors=outage.errors, error=message[:300])

    def reached(self, node_id: str, address: str | None) -> None:
        """A client of this process connected to ``node_id`` (at ``address``)."""
        if address is not None:
            self.addresses[address] = node_id
        now = self.clock()
        for broker in [node_id, *([address] if address else [])]:
            outage = self.down.get(broker)
            # A connection made just as the broker went away may still look open: only one a moment after the
            # last error proves it is back (the next request will tell, if this one cannot).
            if outage is not None and now - outage.last >= QUIET:
                del self.down[broker]
                self.log.warning("Kafka broker reachable again", broker=node_id, seconds=round(now - outage.since, 1),
                                 errors=outage.errors)

    # -- NotEnoughReplicas and other retried produce errors --------------------------------------------------

    def _retried(self, record: logging.LogRecord) -> bool:
        tp, error = record.args[0], record.args[1]  # type: ignore[index]
        kind = error if isinstance(error, str) else getattr(error, "__name__", type(error).__name__)
        replicas = "NotEnoughReplicas" in kind
        key = f"{getattr(tp, 'topic', tp)}-{getattr(tp, 'partition', '')}"
        now = self.clock()
        episode = self.retried.get(key)
        if episode is None or now - episode.last > _EPISODE_GAP:
            episode = self.retried[key] = _Episode(now, now)
        episode.last = now
        episode.retries += 1
        if now - episode.since >= REPLICAS_PATIENCE and now - episode.warned >= REMIND_EVERY:
            episode.warned = now
            self.log.warning("Kafka keeps refusing writes to a partition, retrying", partition=key, error=kind,
                             seconds=round(now - episode.since), retries=episode.retries,
                             hint=REPLICAS_HINT if replicas else None)
        else:
            self.log.debug("write retried", partition=key, error=kind,
                           why=REPLICAS_EXPLAINED if replicas else "a partition leader moved; aiokafka retries")
        return False


WATCH = BrokerWatch()


def watch_connections(watch: BrokerWatch = WATCH) -> None:
    """Tell ``watch`` whenever an aiokafka client gets a connection while some broker is reported down (and of the
    first connection to each node, for its address)."""
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._get_conn
    if getattr(original, "voicecall_watch", None) is not None:
        return

    async def _get_conn(self: Any, node_id: Any, *args: Any, **kwargs: Any) -> Any:
        conn = await original(self, node_id, *args, **kwargs)
        if conn is not None and (watch.down or node_id not in watch.known):
            watch.known.add(node_id)
            broker = self.cluster.broker_metadata(node_id)
            watch.reached(str(node_id), f"{broker.host}:{broker.port}" if broker is not None else None)
        return conn

    _get_conn.voicecall_watch = watch  # type: ignore[attr-defined]
    AIOKafkaClient._get_conn = _get_conn
