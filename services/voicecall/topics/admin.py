"""``voicecall topics create``: make the cluster hold the planned topics (create the missing, align configs)."""

from __future__ import annotations

from typing import Any

from voicecall.runtime.kafka import make_admin
from voicecall.topics.table import TopicSettings, plan


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
