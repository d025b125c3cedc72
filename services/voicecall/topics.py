"""The one definition of every topic: names, keys, partitions, cleanup and retention.

``voicecall topics create`` applies it; ``voicecall topics manifest`` renders Strimzi ``KafkaTopic`` resources
from it; the README and AsyncAPI document describe the same list.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from voicecall.runtime import config, logging as vlog
from voicecall.runtime.kafka import make_admin

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
    TopicSpec("dedup.changelog", "dedup state: fingerprint and window time per call (compacted)",
              "8-byte hash of the sessionId", -1, compacted=True, internal=True),
)


class TopicSettings(config.CommonSettings):
    topic_partitions: int = Field(12, ge=1, le=10_000)
    topic_replication: int = Field(3, ge=1, le=32)
    topic_min_insync: int = Field(2, ge=1, le=32)
    topic_retention: config.Duration = 14 * 86400.0  # raw and derived topics: replay needs history


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
            # Tombstones of expired dedup keys must stay long enough for a restoring reader to see them.
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


async def create(settings: TopicSettings) -> dict[str, str]:
    """Create missing topics and align the configs of existing ones; returns ``{topic: what happened}``."""
    from aiokafka.admin import NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = make_admin(settings)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        planned = plan(settings, brokers=len(cluster["brokers"]))
        existing = set(await admin.list_topics())
        outcome: dict[str, str] = {}
        missing = [t for t in planned if t.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(t.name, t.partitions, t.replication, topic_configs=t.configs) for t in missing])
            for topic, code, *rest in _topic_errors(response):
                # 36 = TOPIC_ALREADY_EXISTS: someone else created it between our list and create.
                if code not in (0, 36):
                    raise RuntimeError(f"creating {topic} failed: error {code} {rest}")
                outcome[topic] = "created"
        present = [t for t in planned if t.name in existing]
        partitions: dict[str, int] = {}
        if present:
            for described in await admin.describe_topics([t.name for t in present]):
                partitions[described["topic"]] = len(described.get("partitions") or [])
        for t in present:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.name, configs=t.configs)])
            outcome[t.name] = "exists (configs applied)"
            have = partitions.get(t.name)
            if have is not None and have != t.partitions:
                # Never changed here: more partitions would move keys (sessionId) to other partitions.
                outcome[t.name] += f"; has {have} partitions, the plan says {t.partitions} (left as is)"
        return outcome
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, Any]]:
    errors = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes", [])
    return [(e[0], e[1], e[2:]) for e in errors]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create_p = sub.add_parser("create", help="create every topic with its partitions and configs (idempotent)")
    create_p.add_argument("--dry-run", action="store_true", help="print the plan as a table and exit")
    create_p.add_argument("--partitions", type=int, help="partitions per topic (VOICECALL_TOPIC_PARTITIONS)")
    create_p.add_argument("--replication", type=int, help="replication factor (VOICECALL_TOPIC_REPLICATION)")
    create_p.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    manifest_p = sub.add_parser("manifest", help="print Strimzi KafkaTopic (or KafkaUser) resources as YAML")
    manifest_p.add_argument("--what", choices=("topics", "users"), default="topics",
                            help="KafkaTopic per topic, or KafkaUser with ACLs per service")
    manifest_p.add_argument("--cluster", help="Strimzi Kafka cluster name (label strimzi.io/cluster)")
    manifest_p.add_argument("--partitions", type=int, help="partitions per topic (VOICECALL_TOPIC_PARTITIONS)")
    manifest_p.add_argument("--replication", type=int, help="replication factor (VOICECALL_TOPIC_REPLICATION)")


def main(args: argparse.Namespace) -> int:
    settings = config.load(TopicSettings, topic_partitions=args.partitions, topic_replication=args.replication,
                           kafka_bootstrap=getattr(args, "bootstrap", None))
    vlog.setup(settings.log_level, settings.log_format)
    if args.action == "manifest":
        from voicecall import manifests

        print(manifests.render(settings, args.what, args.cluster or manifests.DEFAULT_CLUSTER), end="")
        return 0
    if args.action == "create" and args.dry_run:
        print(format_plan(plan(settings)))
        return 0
    outcome = asyncio.run(create(settings))
    for topic, what in outcome.items():
        print(f"{topic}: {what}")
    return 0
