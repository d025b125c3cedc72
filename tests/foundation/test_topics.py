"""`voicecall topics create`: every topic of the interface, idempotent, configs as planned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kafka_helpers import new_prefix
from voicecall import topics
from voicecall.runtime import config
from voicecall.runtime.kafka import make_admin


def test_plan_caps_replication_at_broker_count() -> None:
    settings = config.load(topics.TopicSettings, topic_replication=3, topic_min_insync=2)
    assert {t.replication for t in topics.plan(settings, brokers=1)} == {1}
    assert {t.configs["min.insync.replicas"] for t in topics.plan(settings, brokers=1)} == {"1"}
    assert {t.replication for t in topics.plan(settings, brokers=5)} == {3}
    assert {t.configs["min.insync.replicas"] for t in topics.plan(settings, brokers=5)} == {"2"}


def test_dev_replicates_like_the_table_three_on_three_nodes_one_on_one() -> None:
    from voicecall.devenv.plan import DevSettings

    settings = config.load(DevSettings)  # `voicecall dev --nodes 3` once made RF 1 topics
    assert {t.replication for t in topics.plan(settings, brokers=3)} == {3}
    assert {t.configs["min.insync.replicas"] for t in topics.plan(settings, brokers=3)} == {"2"}
    assert {t.replication for t in topics.plan(settings, brokers=1)} == {1}


async def test_create_is_idempotent_and_configs_read_back(kafka_bootstrap: str) -> None:
    prefix = new_prefix()
    settings = config.load(topics.TopicSettings, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix,
                           topic_partitions=2, topic_retention="3d")
    first = await topics.create(settings)
    assert set(first.values()) == {"created"}
    second = await topics.create(settings)
    assert set(second.values()) == {"exists (configs applied)"}
    assert set(first) == set(second) == {prefix + spec.suffix for spec in topics.TOPICS}

    admin = make_admin(settings)
    await admin.start()
    try:
        planned = {t.name: t for t in topics.plan(settings, brokers=1)}
        described = await admin.describe_topics(list(planned))
        for topic in described:
            assert len(topic["partitions"]) == 2, topic["topic"]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in planned])
        seen: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                _, _, _, name, entries = resource[:5]
                seen[name] = {entry[0]: entry[1] for entry in entries}
        for name, t in planned.items():
            for key, value in t.configs.items():
                assert seen[name][key] == value, (name, key)
        assert seen[prefix + "fee.raw"]["retention.ms"] == str(3 * 86_400_000)
    finally:
        await admin.close()


def test_plan_defaults_match_the_interface() -> None:
    planned = {t.spec.suffix: t for t in topics.plan(config.load(topics.TopicSettings))}
    interface = {"status.raw", "fee.raw", "fee.unique", "billing", "recording.stored", "recording.failed",
                 "deadletter"}
    assert interface <= set(planned)
    for suffix in interface - {"deadletter"}:
        t = planned[suffix]
        assert (t.name, t.partitions, t.replication) == (f"voicecall.{suffix}", 12, 3)
        assert t.configs["retention.ms"] == str(14 * 86_400_000)  # replay needs history
        assert t.configs["min.insync.replicas"] == "2"
        assert t.configs["cleanup.policy"] == "delete"
    changelog = planned["dedup.changelog"]
    assert changelog.configs["cleanup.policy"] == "compact" and changelog.spec.internal


def test_cli_create_twice_against_the_broker(kafka_bootstrap: str) -> None:
    prefix = new_prefix()
    env = {**os.environ, "VOICECALL_TOPIC_PREFIX": prefix, "VOICECALL_TOPIC_PARTITIONS": "2"}
    command = [sys.executable, "-m", "voicecall", "topics", "create", "--bootstrap", kafka_bootstrap]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert sorted(first.stdout.splitlines()) == sorted(f"{prefix}{spec.suffix}: created" for spec in topics.TOPICS)
    # a second run with another partition count changes nothing about partitions and says so
    second = subprocess.run([*command, "--partitions", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert len(lines) == len(topics.TOPICS)
    assert all("exists (configs applied); has 2 partitions, the plan says 3 (left as is)" in line for line in lines)


def test_every_topic_a_service_names_is_in_the_one_definition() -> None:
    settings = config.load(topics.TopicSettings)
    assert topics.name(settings, "fee.unique") == "voicecall.fee.unique"
    with pytest.raises(ValueError, match="not a topic"):
        topics.name(settings, "fee.uniq")
