"""The project's aiokafka against the broker the suite runs on (Apache Kafka, version pinned in
deploy/dev/kafka/pom.xml). Kafka 4 removed the oldest protocol versions (KIP-896); these are the client features
the pipeline relies on, each checked end to end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.timeout(120)


def _name(prefix: str) -> str:
    return f"compat.{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="compat-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _create(admin: AIOKafkaAdminClient, *names: str, partitions: int = 1,
                  configs: dict[str, str] | None = None) -> None:
    await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=configs or {}) for n in names])
    # the topics' leaders are elected asynchronously; wait until the metadata shows them
    deadline = time.monotonic() + 30
    while set(names) - set(await admin.list_topics()):
        assert time.monotonic() < deadline, f"topics {names} not visible after create_topics"
        await asyncio.sleep(0.1)


async def _drain(consumer: AIOKafkaConsumer, want: int, timeout: float = 30) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            got.extend(records)
    return got


def _consumer(bootstrap: str, *topics: str, **kwargs: Any) -> AIOKafkaConsumer:
    defaults: dict[str, Any] = {"bootstrap_servers": bootstrap, "auto_offset_reset": "earliest",
                                "enable_auto_commit": False}
    defaults.update(kwargs)
    return AIOKafkaConsumer(*topics, **defaults)


async def test_idempotent_producer(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    topic = _name("idem")
    await _create(admin, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 5}".encode()) for i in range(30)]
        batch = producer.create_batch()
        batch.append(key=b"b", value=b"batched", timestamp=None)
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()
    assert all(m.topic == topic for m in metas)
    consumer = _consumer(kafka_bootstrap, topic)
    await consumer.start()
    try:
        got = await _drain(consumer, 31)
    finally:
        await consumer.stop()
    assert sorted(r.value for r in got) == sorted([f"v{i}".encode() for i in range(30)] + [b"batched"])


async def test_transactions_commit_and_abort(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    source, sink, group = _name("tx-in"), _name("tx-out"), _name("tx-group")
    await _create(admin, source, sink)
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await plain.start()
    try:
        for i in range(4):
            await plain.send_and_wait(source, f"in{i}".encode())
    finally:
        await plain.stop()

    reader = _consumer(kafka_bootstrap, source, group_id=group, isolation_level="read_committed")
    tx = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=_name("txid"), acks="all",
                          enable_idempotence=True)
    await reader.start()
    await tx.start()
    try:
        records = await _drain(reader, 4)
        assert [r.value for r in records] == [b"in0", b"in1", b"in2", b"in3"]
        tp = TopicPartition(source, 0)
        # consume-transform-produce: the first two inputs committed together with their outputs
        async with tx.transaction():
            for r in records[:2]:
                await tx.send(sink, b"out-" + r.value)
            await tx.send_offsets_to_transaction({tp: OffsetAndMetadata(records[1].offset + 1, "")}, group)
        # the other two aborted: neither the outputs nor the offsets may become visible
        await tx.begin_transaction()
        for r in records[2:]:
            await tx.send(sink, b"aborted-" + r.value)
        await tx.send_offsets_to_transaction({tp: OffsetAndMetadata(records[3].offset + 1, "")}, group)
        await tx.abort_transaction()
        # and one more committed after the abort, through begin/commit rather than the context manager
        await tx.begin_transaction()
        await tx.send(sink, b"after-abort")
        await tx.commit_transaction()
    finally:
        await tx.stop()
        await reader.stop()

    committed_reader = _consumer(kafka_bootstrap, sink, isolation_level="read_committed")
    await committed_reader.start()
    try:
        seen = [r.value for r in await _drain(committed_reader, 3)]
        await asyncio.sleep(1)  # anything aborted would have been returned by now
        seen += [r.value for batch in (await committed_reader.getmany(timeout_ms=500)).values() for r in batch]
    finally:
        await committed_reader.stop()
    assert seen == [b"out-in0", b"out-in1", b"after-abort"]

    uncommitted_reader = _consumer(kafka_bootstrap, sink, isolation_level="read_uncommitted")
    await uncommitted_reader.start()
    try:
        raw = [r.value for r in await _drain(uncommitted_reader, 5)]
    finally:
        await uncommitted_reader.stop()
    assert b"aborted-in2" in raw  # the records were written, only hidden from read_committed

    offsets = await admin.list_consumer_group_offsets(group)
    assert offsets[TopicPartition(source, 0)].offset == 2


async def test_consumer_group_commit_and_rejoin(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    topic, group = _name("group"), _name("group")
    await _create(admin, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"first{i}".encode(), partition=i % 2)

        first = _consumer(kafka_bootstrap, group_id=group)
        first.subscribe([topic])
        await first.start()
        try:
            got = await _drain(first, 10)
            assert len(got) == 10
            await first.commit()
            assert sorted(first.assignment()) == [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        finally:
            await first.stop()  # leaves the group

        for i in range(6):
            await producer.send_and_wait(topic, f"second{i}".encode(), partition=i % 2)
    finally:
        await producer.stop()

    second = _consumer(kafka_bootstrap, group_id=group)
    second.subscribe([topic])
    await second.start()
    try:
        got = await _drain(second, 6)
        await asyncio.sleep(0.5)
        got += [r for batch in (await second.getmany(timeout_ms=500)).values() for r in batch]
        assert sorted(r.value for r in got) == sorted(f"second{i}".encode() for i in range(6))
        # a second member joins: the group rebalances and both partitions stay owned
        third = _consumer(kafka_bootstrap, group_id=group)
        third.subscribe([topic])
        await third.start()
        try:
            deadline = time.monotonic() + 30
            while len(second.assignment()) + len(third.assignment()) != 2 or not third.assignment():
                assert time.monotonic() < deadline, "rebalance did not assign a partition to the new member"
                await asyncio.gather(second.getmany(timeout_ms=200), third.getmany(timeout_ms=200))
        finally:
            await third.stop()
    finally:
        await second.stop()


async def test_offsets_for_times(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    topic = _name("times")
    await _create(admin, topic)
    base = int(time.time() * 1000) - 60_000
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"t{i}".encode(), partition=0, timestamp_ms=base + i * 10_000)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = _consumer(kafka_bootstrap)
    await consumer.start()
    try:
        found = await consumer.offsets_for_times({tp: base + 15_000})
        assert found[tp] is not None
        assert (found[tp].offset, found[tp].timestamp) == (2, base + 20_000)
        assert (await consumer.offsets_for_times({tp: base + 10**9}))[tp] is None
        assert (await consumer.beginning_offsets([tp]))[tp] == 0
        assert (await consumer.end_offsets([tp]))[tp] == 5
    finally:
        await consumer.stop()


async def test_admin_describe_configs_and_delete_records(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    topic = _name("admin")
    await _create(admin, topic, configs={"retention.ms": "3600000", "cleanup.policy": "delete"})
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            error_code, _message, _rtype, name, configs = resource[:5]
            assert error_code == 0 and name == topic
            entries.update({c[0]: c[1] for c in configs})
    assert entries["retention.ms"] == "3600000"
    assert entries["cleanup.policy"] == "delete"

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    low = await admin.delete_records({tp: RecordsToDelete(before_offset=3)})
    assert low[tp] == 3
    consumer = _consumer(kafka_bootstrap, topic)
    await consumer.start()
    try:
        assert (await consumer.beginning_offsets([tp]))[tp] == 3
        assert [r.value for r in await _drain(consumer, 2)] == [b"r3", b"r4"]
    finally:
        await consumer.stop()


async def test_admin_lists_and_describes_groups(kafka_bootstrap: str, admin: AIOKafkaAdminClient) -> None:
    topic, group = _name("desc"), _name("desc-group")
    await _create(admin, topic)
    consumer = _consumer(kafka_bootstrap, group_id=group)
    consumer.subscribe([topic])
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never got its partition"
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({TopicPartition(topic, 0): 0})
        groups = await admin.list_consumer_groups()
        assert (group, "consumer") in [tuple(g[:2]) for g in groups]
        described = await admin.describe_consumer_groups([group])
        found = [g for response in described for g in response.groups if g[1] == group]
        assert found, described
        error_code, _gid, state, protocol_type, _protocol, members = found[0][:6]
        assert (error_code, state, protocol_type) == (0, "Stable", "consumer")
        assert len(members) == 1
    finally:
        await consumer.stop()
