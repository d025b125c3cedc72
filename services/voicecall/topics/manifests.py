"""Strimzi ``KafkaTopic`` and ``KafkaUser`` resources rendered from the one topic definition (:mod:`.table`).

``voicecall topics manifest`` prints them; the files under ``deploy/k8s/base/kafka/`` are that output, and a test
fails when the two drift. Everything here is pure (settings in → dicts/YAML out) so it is unit-tested directly.

Each service gets its own ``KafkaUser`` with least-privilege ACLs derived from :data:`SERVICES`: the topics it
reads (plus its consumer group), the topics it writes, and — for the exactly-once stages — the transactional ids
its producers use (``<group>-<topic>-<partition>``, so one prefix ACL on ``<group>-`` covers them all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from voicecall.runtime.kafka import group_id
from voicecall.topics import table

API_VERSION = "kafka.strimzi.io/v1beta2"
DEFAULT_CLUSTER = "voicecall-kafka"
PART_OF = "voicecall"


@dataclass(frozen=True)
class Access:
    """What one service does on Kafka; topic names are suffixes of :data:`voicecall.topics.table.TOPICS`."""

    service: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    group: bool = False  # consumes with its consumer group (runtime.kafka.group_id)
    transactional: bool = False  # produces in transactions with ids prefixed "<group>-"
    group_admin: bool = False  # may inspect, reset and delete every group of the prefix (replay)
    limits: bool = False  # reads max.message.bytes of the topics it writes (DescribeConfigs), to size its records


SERVICES: tuple[Access, ...] = (
    Access("ingress", writes=("status.raw", "fee.raw", "deadletter"), limits=True),
    Access("dedup", reads=("fee.raw", "dedup.changelog"), writes=("fee.unique", "dedup.changelog", "deadletter"),
           group=True, transactional=True),
    Access("billing", reads=("fee.unique",), writes=("billing", "deadletter"), group=True, transactional=True),
    Access("recordings", reads=("fee.unique",), writes=("recording.stored", "recording.failed", "deadletter"),
           group=True),
    # Five co-partitioned inputs (status.raw first: it names the transactional ids); calls is both its output and
    # the state it restores from.
    Access("calls", reads=("status.raw", "fee.unique", "billing", "recording.stored", "recording.failed", "calls"),
           writes=("calls", "deadletter"), group=True, transactional=True),
    # `voicecall replay` and `voicecall tail`, run by an operator: reads everything, re-publishes a window into
    # any topic but the internal ones and calls (the calls stage's own state: nothing else may write it), resets
    # the services' groups. Not a long-running workload.
    Access("operator", reads=tuple(t.suffix for t in table.TOPICS),
           writes=tuple(t.suffix for t in table.TOPICS if not t.internal and t.suffix != "calls"),
           group_admin=True),
)

WORKLOADS: tuple[str, ...] = ("ingress", "dedup", "billing", "recordings", "calls")

_K8S_NAME = re.compile(r"[^a-z0-9.-]+")


def resource_name(topic: str) -> str:
    """A valid Kubernetes object name for a topic (lower case, ``[a-z0-9.-]``); the real name goes in topicName."""
    cleaned = _K8S_NAME.sub("-", topic.lower()).strip(".-")
    return cleaned[:253] or "topic"


def user_name(service: str) -> str:
    return f"{PART_OF}-{service}"


def _labels(cluster: str, component: str) -> dict[str, str]:
    return {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": component}


def kafka_topics(settings: table.TopicSettings, cluster: str = DEFAULT_CLUSTER) -> list[dict[str, Any]]:
    """One ``KafkaTopic`` per planned topic, with the same partitions, replicas and configs as ``topics create``."""
    result = []
    for planned in table.plan(settings):
        result.append({
            "apiVersion": API_VERSION,
            "kind": "KafkaTopic",
            "metadata": {
                "name": resource_name(planned.name),
                "labels": _labels(cluster, "topic"),
                "annotations": {"voicecall/description": planned.spec.description, "voicecall/key": planned.spec.key},
            },
            "spec": {
                "topicName": planned.name,
                "partitions": planned.partitions,
                "replicas": planned.replication,
                "config": dict(sorted(planned.configs.items())),
            },
        })
    return result


def _acl(kind: str, name: str, operations: list[str], pattern: str = "literal") -> dict[str, Any]:
    resource: dict[str, Any] = {"type": kind}
    if kind != "cluster":
        resource.update({"name": name, "patternType": pattern})
    return {"resource": resource, "operations": operations, "host": "*"}


def acls(settings: table.TopicSettings, access: Access) -> list[dict[str, Any]]:
    """The least-privilege ACL list of one service."""
    rules: list[dict[str, Any]] = []
    both = [s for s in access.reads if s in access.writes]
    for suffix in access.reads:
        ops = ["Describe", "Read", "Write"] if suffix in both else ["Describe", "Read"]
        rules.append(_acl("topic", table.name(settings, suffix), ops))
    for suffix in access.writes:
        if suffix not in both:
            ops = ["Describe", "DescribeConfigs", "Write"] if access.limits else ["Describe", "Write"]
            rules.append(_acl("topic", table.name(settings, suffix), ops))
    if access.writes:
        # Idempotent producers (every producer of the project): brokers before Kafka 3.0 want this on the cluster.
        rules.append(_acl("cluster", "", ["IdempotentWrite"]))
    if access.group:
        rules.append(_acl("group", group_id(settings, access.service), ["Describe", "Read"]))
    if access.transactional:
        rules.append(_acl("transactionalId", f"{group_id(settings, access.service)}-", ["Describe", "Write"],
                          pattern="prefix"))
    if access.group_admin:
        rules.append(_acl("group", settings.topic_prefix or "*", ["Delete", "Describe", "Read"],
                          pattern="prefix" if settings.topic_prefix else "literal"))
    return rules


def kafka_users(settings: table.TopicSettings, cluster: str = DEFAULT_CLUSTER) -> list[dict[str, Any]]:
    """One ``KafkaUser`` per service: SCRAM-SHA-512 (Strimzi writes the password into a Secret of the same name)."""
    return [{
        "apiVersion": API_VERSION,
        "kind": "KafkaUser",
        "metadata": {"name": user_name(access.service), "labels": _labels(cluster, access.service)},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls(settings, access)},
        },
    } for access in SERVICES]


def to_yaml(resources: list[dict[str, Any]], header: str = "") -> str:
    docs = [yaml.safe_dump(r, sort_keys=False, default_flow_style=False, width=1000) for r in resources]
    prefix = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return prefix + "---\n" + "---\n".join(docs)


def render(settings: table.TopicSettings, what: str = "topics", cluster: str = DEFAULT_CLUSTER) -> str:
    """The YAML ``voicecall topics manifest`` prints (``what``: ``topics`` or ``users``)."""
    if what == "topics":
        resources = kafka_topics(settings, cluster)
    elif what == "users":
        resources = kafka_users(settings, cluster)
    else:
        raise ValueError(f"unknown manifest kind {what!r} (topics or users)")
    command = f"voicecall topics manifest --what {what}"
    if cluster != DEFAULT_CLUSTER:
        command += f" --cluster {cluster}"
    header = (f"Generated by `{command}` from services/voicecall/topics/table.py and topics/manifests.py.\n"
              "Do not edit: regenerate (with no VOICECALL_* variables set); tests/deploy fails when they drift.")
    return to_yaml(resources, header)
