"""The committed KafkaUser ACLs on a real Kafka authorizer: each service can do its job and nothing else.

A private Apache Kafka broker (acl_helpers.py) runs SASL/SCRAM-SHA-512 with the StandardAuthorizer. The ACLs of
deploy/k8s/base/kafka/users.yaml are created the way Strimzi's User Operator does it (principal
``User:<KafkaUser name>``, one ACL per operation), and then every service connects as its user through the
project's own client factories (SASL settings included) and does what the service does: idempotent produce,
read_committed consume, group commits, transactions with send_offsets_to_transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import acl_helpers
import pytest
import yaml
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.protocol.admin import CreateAclsRequest
from deploy_helpers import K8S

from voicecall import topics
from voicecall.ingress.limits import Limits, learn
from voicecall.replay import copy as replay_copy, names, reset as replay_reset, tail, window
from voicecall.runtime import config, kafka
from voicecall.topics import manifests

# Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, PatternType, acl.AclOperation, AclPermissionType)
RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactionalId": 5}
PATTERN = {"literal": 3, "prefix": 4}
OPERATION = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
             "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12}
ALLOW = 3
STEP = 20.0  # seconds any single client step may take

SETTINGS = topics.TopicSettings(topic_prefix="voicecall.", topic_partitions=1, topic_replication=1,
                                topic_min_insync=1)
ACCESS = {a.service: a for a in manifests.SERVICES}


class Cluster:
    def __init__(self, broker: acl_helpers.AclBroker, passwords: dict[str, str]) -> None:
        self.broker, self.passwords = broker, passwords

    def as_user(self, service: str, password: str | None = None) -> config.CommonSettings:
        user = manifests.user_name(service)
        return config.CommonSettings(kafka_bootstrap=self.broker.sasl_bootstrap, kafka_client_id=user,
                                     kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                     kafka_sasl_username=user, kafka_sasl_password=password or self.passwords[user])


def topic(suffix: str) -> str:
    return topics.name(SETTINGS, suffix)


def committed_users() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((K8S / "base" / "kafka" / "users.yaml").read_text())
    return [d for d in docs if d and d["kind"] == "KafkaUser"]


async def create_acls(admin: Any, user: dict[str, Any]) -> int:
    count = 0
    for rule in user["spec"]["authorization"]["acls"]:
        res = rule["resource"]
        for op in rule["operations"]:
            request = CreateAclsRequest(RESOURCE[res["type"]], res.get("name", "kafka-cluster"),
                                        PATTERN[res.get("patternType", "literal")],
                                        f"User:{user['metadata']['name']}", rule.get("host", "*"), OPERATION[op], ALLOW)
            response = await admin._send_request(request)
            assert all(code == 0 for code, *_ in response.creation_responses), response
            count += 1
    return count


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    users = committed_users()
    passwords = {u["metadata"]["name"]: secrets.token_hex(12) for u in users}
    broker = await asyncio.to_thread(acl_helpers.start, tmp_path_factory.mktemp("acl-broker"), passwords)
    try:
        admin_settings = SETTINGS.model_copy(update={"kafka_bootstrap": broker.admin_bootstrap})
        await topics.create(admin_settings)
        admin = kafka.make_admin(admin_settings)
        await admin.start()
        try:
            assert sum([await create_acls(admin, user) for user in users]) > 20
        finally:
            await admin.close()
        # one record in every topic, so that a permitted read has something to return
        producer = kafka.make_producer(admin_settings)
        await producer.start()
        try:
            for spec in topics.TOPICS:
                await producer.send_and_wait(topic(spec.suffix), b"{}", key=b"seed")
        finally:
            await producer.stop()
        yield Cluster(broker, passwords)
    finally:
        await asyncio.to_thread(broker.stop)


async def produce(settings: config.CommonSettings, suffixes: list[str]) -> dict[str, str]:
    """Try to produce one record to each topic with one idempotent producer: {suffix: "ok" | error name}."""
    producer = kafka.make_producer(settings, request_timeout_ms=5000)
    await asyncio.wait_for(producer.start(), STEP)
    outcome = {}
    try:
        for suffix in suffixes:
            try:
                await asyncio.wait_for(producer.send_and_wait(topic(suffix), b"{}", key=b"k"), STEP)
                outcome[suffix] = "ok"
            except KafkaError as error:
                outcome[suffix] = type(error).__name__
    finally:
        await producer.stop()
    return outcome


async def records_read(settings: config.CommonSettings, suffix: str) -> int | str:
    """Records a read_committed consumer without a group gets from the topic (holding one), or the error."""
    consumer = kafka.make_consumer(settings, group_id=None, request_timeout_ms=5000)
    await asyncio.wait_for(consumer.start(), STEP)
    try:
        consumer.assign([TopicPartition(topic(suffix), 0)])
        got = await asyncio.wait_for(consumer.getmany(timeout_ms=2500), STEP)
        return sum(len(batch) for batch in got.values())
    except KafkaError as error:
        return type(error).__name__
    finally:
        await consumer.stop()


async def commit_offset(settings: config.CommonSettings, group: str, suffix: str) -> str:
    consumer = kafka.make_consumer(settings, group_id=group, request_timeout_ms=5000)
    await asyncio.wait_for(consumer.start(), STEP)
    try:
        tp = TopicPartition(topic(suffix), 0)
        consumer.assign([tp])
        await asyncio.wait_for(consumer.commit({tp: 1}), STEP)
        return "ok"
    except KafkaError as error:
        return type(error).__name__
    finally:
        await consumer.stop()


async def transaction(settings: config.CommonSettings, transactional_id: str, writes: list[str],
                      group: str | None = None, input_suffix: str | None = None) -> str:
    """One transaction as the exactly-once shell runs it: produce, send the input offsets, commit."""
    producer = kafka.make_transactional_producer(settings, transactional_id, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), STEP)
        async with producer.transaction():
            for suffix in writes:
                await asyncio.wait_for(producer.send_and_wait(topic(suffix), b"{}", key=b"k"), STEP)
            if group and input_suffix:
                await asyncio.wait_for(producer.send_offsets_to_transaction(
                    {TopicPartition(topic(input_suffix), 0): 1}, group), STEP)
        return "ok"
    except KafkaError as error:
        return type(error).__name__
    finally:
        await producer.stop()


def group(service: str) -> str:
    return kafka.group_id(SETTINGS, service)


@pytest.mark.parametrize("service", [a.service for a in manifests.SERVICES])
async def test_each_service_can_do_its_job(cluster: Cluster, service: str) -> None:
    access, settings = ACCESS[service], cluster.as_user(service)
    writes = [s for s in access.writes]
    assert await produce(settings, writes) == dict.fromkeys(writes, "ok")
    for suffix in access.reads:
        assert await records_read(settings, suffix) >= 1, f"{service} cannot read {suffix}"
    inputs = [s for s in access.reads if s != "dedup.changelog"]
    if access.group:
        for suffix in inputs:
            assert await commit_offset(settings, group(service), suffix) == "ok"
    if access.transactional:
        # transactional.id = <group>-<input topic>-<partition> (runtime/stage/assignment.py)
        tid = f"{group(service)}-{topic(inputs[0])}-0"
        assert await transaction(settings, tid, writes, group(service), inputs[0]) == "ok"
    if access.limits:  # the ingress reads max.message.bytes of the topics it writes
        limits = Limits([topic(s) for s in writes], topic("deadletter"), 1024)
        assert await asyncio.wait_for(learn(settings, limits), STEP)
    if access.group_admin:
        # `voicecall replay reset`: describe a service's group, then commit its new offsets
        for other in ("dedup", "billing", "recordings"):
            assert await commit_offset(settings, group(other), ACCESS[other].reads[0]) == "ok"
        admin = kafka.make_admin(settings)
        await admin.start()
        try:
            described = await asyncio.wait_for(admin.describe_consumer_groups([group("billing")]), STEP)
            assert described
        finally:
            await admin.close()


@pytest.mark.parametrize("service", [a.service for a in manifests.SERVICES])
async def test_each_service_is_denied_everything_else(cluster: Cluster, service: str) -> None:
    access, settings = ACCESS[service], cluster.as_user(service)
    others = [t.suffix for t in topics.TOPICS if t.suffix not in access.writes]
    if others:
        assert await produce(settings, others) == dict.fromkeys(others, "TopicAuthorizationFailedError")
    unread = [t.suffix for t in topics.TOPICS if t.suffix not in access.reads]
    results = await asyncio.gather(*(records_read(settings, s) for s in unread))
    for suffix, result in zip(unread, results, strict=True):
        assert result in (0, "TopicAuthorizationFailedError"), f"{service} read {suffix}: {result}"
    if not access.group_admin:
        foreign = [s for s in ("dedup", "billing", "recordings") if s != service]
        for other in foreign:
            assert await commit_offset(settings, group(other), "fee.unique") == "GroupAuthorizationFailedError"
    for other in ("dedup", "billing"):
        if other == service:
            continue
        tid = f"{group(other)}-{topic(ACCESS[other].reads[0])}-0"
        assert await transaction(settings, tid, []) == "TransactionalIdAuthorizationFailed", (service, other)
    if not access.transactional:
        assert await transaction(settings, f"{group(service)}-x-0", []) == "TransactionalIdAuthorizationFailed"


async def test_operator_runs_the_replay_and_tail_commands(cluster: Cluster) -> None:
    """`voicecall replay reset|copy` and `voicecall tail` themselves, as the voicecall-operator user."""
    settings = cluster.as_user("operator")
    out = io.StringIO()
    assert await asyncio.wait_for(replay_reset.reset(settings, "recordings", 0, dry_run=False, out=out), STEP) == 0
    assert "committed new offsets" in out.getvalue()
    now = window.parse("now")
    summary = await asyncio.wait_for(replay_copy.copy(settings, "fee.unique", "fee.raw", window.Window(0, now + 1000),
                                                      replay_id="acl-test", err=io.StringIO()), STEP)
    assert summary.copied >= 1
    printed = io.BytesIO()
    args = argparse.Namespace(topic="fee.raw", from_beginning=True, since=None, key=None, headers=True, max=50,
                              timeout=3.0)
    await asyncio.wait_for(tail.tail(settings, args, asyncio.Event(), printed), STEP)
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert any(line["headers"].get("voicecall-replay-id") == "acl-test" for line in lines), lines
    # ...but a copy into the deduplicator's internal state is refused: by the command before it connects, and by
    # the ACLs for any other client of the operator user.
    with pytest.raises(names.InternalTopic):
        await asyncio.wait_for(replay_copy.copy(settings, "fee.unique", "dedup.changelog",
                                                window.Window(0, now + 1000), err=io.StringIO()), STEP)
    assert await produce(settings, ["dedup.changelog"]) == {"dedup.changelog": "TopicAuthorizationFailedError"}


async def test_a_wrong_password_is_refused(cluster: Cluster) -> None:
    settings = cluster.as_user("billing", password="not-" + cluster.passwords["voicecall-billing"])
    producer = kafka.make_producer(settings, request_timeout_ms=5000)
    with pytest.raises(KafkaError) as refused:
        await asyncio.wait_for(producer.start(), STEP)
    await producer.stop()
    assert "refused the credentials" in str(refused.value) and "VOICECALL_KAFKA_SASL_PASSWORD" in str(refused.value)


def test_error_names_used_above_exist() -> None:
    # The expectations compare error class names; keep them tied to aiokafka's classes.
    assert {TopicAuthorizationFailedError.__name__, GroupAuthorizationFailedError.__name__,
            TransactionalIdAuthorizationFailed.__name__} == {
        "TopicAuthorizationFailedError", "GroupAuthorizationFailedError", "TransactionalIdAuthorizationFailed"}
