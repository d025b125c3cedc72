"""The one definition of every topic: names, keys, partitions, cleanup and retention, and the plan made from it.

Pure: :mod:`voicecall.topics.admin` applies the plan to a cluster, :mod:`voicecall.topics.manifests` renders it
as Strimzi resources; the README and the AsyncAPI document describe the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from voicecall.runtime import config

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    suffix: str  # the name after the prefix
    description: str
    key: str
    retention_ms: int | None  # None = the settings' default for that class of topic
    compacted: bool = False
    internal: bool = False


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("status.raw", "one record per status push; value = statusInfo as received", "sessionId", None),
    TopicSpec("fee.raw", "one record per element of feeLst, as received", "sessionId", None),
    TopicSpec("fee.unique", "each fee record exactly once per dedup window", "sessionId", None),
    TopicSpec("billing", "one billing record per unique fee record", "sessionId", None),
    TopicSpec("recording.stored", "one record per recording saved", "sessionId", None),
    TopicSpec("recording.failed", "one record per recording given up on, with the reason", "sessionId", None),
    TopicSpec("deadletter", "anything rejected or failed at any stage, with the reason and origin",
              "as received", 30 * DAY_MS),
    TopicSpec("calls", "the whole current record of each call after every change (compacted)", "sessionId", -1,
              compacted=True),
    TopicSpec("dedup.changelog", "dedup state: fingerprint and window time per call (compacted)",
              "8-byte hash of the sessionId", -1, compacted=True, internal=True),
)


class TopicSettings(config.CommonSettings):
    topic_partitions: int = Field(12, ge=1, le=10_000, description="partitions per topic: the most instances "
                                                                   "of a stage that can share the work")
    topic_replication: int = Field(3, ge=1, le=32, description="replicas per partition (capped at the broker count)")
    topic_min_insync: int = Field(2, ge=1, le=32, description="min.insync.replicas: replicas that must have a "
                                                              "write before it is acknowledged (capped likewise)")
    topic_retention: config.Duration = Field(14 * 86400.0, description="retention of the event topics (replay "
                                                                       "needs history; deadletter keeps 30d)")


SUFFIXES = frozenset(spec.suffix for spec in TOPICS)


def name(settings: config.CommonSettings, suffix: str) -> str:
    """The full name of one of :data:`TOPICS`; a topic not defined there is a programming error (this table is
    what ``topics create``, the manifests and the docs are made from)."""
    if suffix not in SUFFIXES:
        raise ValueError(f"{suffix!r} is not a topic of voicecall.topics.TOPICS ({', '.join(sorted(SUFFIXES))})")
    return f"{settings.topic_prefix}{suffix}"


@dataclass(frozen=True)
class PlannedTopic:
    name: str
    spec: TopicSpec
    partitions: int
    replication: int
    configs: dict[str, str]


def plan(settings: TopicSettings, brokers: int | None = None) -> list[PlannedTopic]:
    """Every topic with its partitions and configs; replication is capped at the broker count when known."""
    replication = min(settings.topic_replication, brokers) if brokers else settings.topic_replication
    min_isr = max(1, min(settings.topic_min_insync, replication - 1 if replication > 1 else 1))
    result = []
    for spec in TOPICS:
        configs = {"min.insync.replicas": str(min_isr)}
        if spec.compacted:
            # Tombstones (expired dedup keys, calls past their retention) must stay long enough for a restoring
            # reader to see them.
            configs.update({"cleanup.policy": "compact", "delete.retention.ms": str(DAY_MS),
                            "min.compaction.lag.ms": "0", "segment.ms": str(DAY_MS)})
        else:
            retention = spec.retention_ms or int(settings.topic_retention * 1000)
            configs.update({"cleanup.policy": "delete", "retention.ms": str(retention)})
        result.append(PlannedTopic(name(settings, spec.suffix), spec, settings.topic_partitions, replication,
                                   configs))
    return result


def format_plan(planned: list[PlannedTopic]) -> str:
    rows = [("topic", "partitions", "replicas", "key", "configs")]
    for t in planned:
        rows.append((t.name, str(t.partitions), str(t.replication), t.spec.key,
                     ",".join(f"{k}={v}" for k, v in sorted(t.configs.items()))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
