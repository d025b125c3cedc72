"""`voicecall topics manifest`: Strimzi resources from the one topic definition, least-privilege ACLs, no drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from deploy_support import K8S

from voicecall import topics
from voicecall.runtime import config
from voicecall.topics import manifests

K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}


def settings(**overrides: Any) -> topics.TopicSettings:
    # Built from explicit values only, whatever VOICECALL_* the developer has exported.
    base = {"topic_prefix": "voicecall.", "topic_partitions": 12, "topic_replication": 3, "topic_min_insync": 2,
            "topic_retention": "14d"}
    return topics.TopicSettings(**{**base, **overrides})


def run_manifest(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "voicecall", "topics", "manifest", *args], capture_output=True,
                         text=True, env=env or clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def acl_index(user: dict[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    index: dict[tuple[str, str, str], set[str]] = {}
    for rule in user["spec"]["authorization"]["acls"]:
        res = rule["resource"]
        index.setdefault((res["type"], res.get("name", ""), res.get("patternType", "")), set()).update(
            rule["operations"])
    return index


def test_one_kafkatopic_per_planned_topic_with_the_same_layout() -> None:
    s = settings(topic_partitions=6)
    rendered = manifests.kafka_topics(s, cluster="c1")
    planned = topics.plan(s)
    assert [r["spec"]["topicName"] for r in rendered] == [p.name for p in planned]
    assert len(rendered) == len(topics.TOPICS)
    for resource, plan in zip(rendered, planned, strict=True):
        assert resource["kind"] == "KafkaTopic"
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == "c1"
        assert resource["spec"]["partitions"] == 6 == plan.partitions
        assert resource["spec"]["replicas"] == plan.replication
        assert resource["spec"]["config"] == plan.configs
    changelog = next(r for r in rendered if r["spec"]["topicName"].endswith("dedup.changelog"))
    assert changelog["spec"]["config"]["cleanup.policy"] == "compact"


@pytest.mark.parametrize("prefix", ["Stage_A.", "voicecall.", "x-"])
def test_resource_names_are_valid_kubernetes_names_and_topic_names_stay_exact(prefix: str) -> None:
    for resource in manifests.kafka_topics(settings(topic_prefix=prefix)):
        assert K8S_NAME.match(resource["metadata"]["name"]), resource["metadata"]["name"]
        assert resource["spec"]["topicName"].startswith(prefix)
    names = [r["metadata"]["name"] for r in manifests.kafka_topics(settings(topic_prefix="Stage_A."))]
    assert len(set(names)) == len(names)
    assert names[0] == "stage-a.status.raw"


def test_every_topic_an_acl_names_exists() -> None:
    suffixes = {t.suffix for t in topics.TOPICS}
    for access in manifests.SERVICES:
        assert set(access.reads) <= suffixes, access
        assert set(access.writes) <= suffixes, access
    assert set(manifests.WORKLOADS) <= {a.service for a in manifests.SERVICES}


def test_acls_are_least_privilege() -> None:
    users = {u["metadata"]["name"]: acl_index(u) for u in manifests.kafka_users(settings())}
    assert set(users) == {f"voicecall-{s.service}" for s in manifests.SERVICES}

    ingress = users["voicecall-ingress"]
    assert ingress[("topic", "voicecall.fee.raw", "literal")] == {"Describe", "Write"}
    assert not any(kind == "group" for kind, _, _ in ingress), "the ingress consumes nothing"
    assert not any("Read" in ops for ops in ingress.values())

    dedup = users["voicecall-dedup"]
    assert dedup[("topic", "voicecall.fee.raw", "literal")] == {"Describe", "Read"}
    assert dedup[("topic", "voicecall.dedup.changelog", "literal")] == {"Describe", "Read", "Write"}
    assert dedup[("group", "voicecall.dedup", "literal")] == {"Describe", "Read"}
    # transactional.id = <group>-<topic>-<partition>: one prefix rule, and only its own
    assert dedup[("transactionalId", "voicecall.dedup-", "prefix")] == {"Describe", "Write"}

    billing = users["voicecall-billing"]
    assert ("topic", "voicecall.fee.unique", "literal") in billing
    assert billing[("topic", "voicecall.fee.unique", "literal")] == {"Describe", "Read"}, "never writes its input"
    assert ("transactionalId", "voicecall.billing-", "prefix") in billing
    assert ("topic", "voicecall.dedup.changelog", "literal") not in billing

    recordings = users["voicecall-recordings"]
    assert not any(kind == "transactionalId" for kind, _, _ in recordings)
    assert recordings[("topic", "voicecall.recording.failed", "literal")] == {"Describe", "Write"}

    operator = users["voicecall-operator"]
    assert operator[("topic", "voicecall.dedup.changelog", "literal")] == {"Describe", "Read"}, \
        "replay never writes into the internal changelog"
    assert operator[("group", "voicecall.", "prefix")] == {"Delete", "Describe", "Read"}

    for name, index in users.items():
        for (kind, res, pattern), ops in index.items():
            assert "All" not in ops, name
            assert not (kind == "topic" and pattern == "prefix"), f"{name}: topic rules are literal"
            assert res != "*", name


def test_acls_follow_the_prefix() -> None:
    users = {u["metadata"]["name"]: acl_index(u) for u in manifests.kafka_users(settings(topic_prefix="stg."))}
    assert ("transactionalId", "stg.billing-", "prefix") in users["voicecall-billing"]
    assert ("group", "stg.recordings", "literal") in users["voicecall-recordings"]
    assert all(res.startswith("stg.") for index in users.values() for (kind, res, _) in index if kind == "topic")


@pytest.mark.parametrize("what", ["topics", "users"])
def test_committed_kafka_resources_equal_the_command_output(what: str) -> None:
    """The drift test: regenerate with `voicecall topics manifest --what {topics,users}` > deploy/k8s/base/kafka/…"""
    committed = (K8S / "base" / "kafka" / f"{what}.yaml").read_text()
    assert run_manifest("--what", what) == committed, (
        f"deploy/k8s/base/kafka/{what}.yaml is stale: run `voicecall topics manifest --what {what}` "
        f"(with no VOICECALL_* set) and commit the output")


def test_manifest_command_honours_flags_and_environment() -> None:
    env = {**clean_env(), "VOICECALL_TOPIC_PREFIX": "stg.", "VOICECALL_TOPIC_RETENTION": "3d"}
    docs = list(yaml.safe_load_all(run_manifest("--partitions", "4", "--cluster", "other", env=env)))
    docs = [d for d in docs if d]
    assert {d["spec"]["partitions"] for d in docs} == {4}
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in docs} == {"other"}
    assert all(d["spec"]["topicName"].startswith("stg.") for d in docs)
    fee_raw = next(d for d in docs if d["spec"]["topicName"] == "stg.fee.raw")
    assert fee_raw["spec"]["config"]["retention.ms"] == str(3 * 86_400_000)


def test_manifest_rejects_a_bad_value_naming_the_variable() -> None:
    out = subprocess.run([sys.executable, "-m", "voicecall", "topics", "manifest"], capture_output=True, text=True,
                         env={**clean_env(), "VOICECALL_TOPIC_PARTITIONS": "0"}, timeout=60)
    assert out.returncode == 2
    assert "VOICECALL_TOPIC_PARTITIONS" in out.stderr


def test_render_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        manifests.render(config.load(topics.TopicSettings), "brokers")
