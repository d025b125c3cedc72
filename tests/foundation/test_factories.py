"""The shared runtime against the real broker: the Kafka client factories keep the interface's promises
(acks=all + idempotence, transactions, read_committed consumers with manual commits, admin), and the ops server
answers /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from voicecall.runtime import config, kafka, metrics


async def test_factories_idempotent_transactional_and_read_committed(kafka_bootstrap: str) -> None:
    settings = config.load(config.CommonSettings, kafka_bootstrap=kafka_bootstrap)
    topic = f"factories.{uuid.uuid4().hex[:8]}"
    admin = kafka.make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        for _ in range(100):
            if topic in await admin.list_topics():
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()

    plain = kafka.make_producer(settings)
    assert plain._sender._acks == -1  # acks=all: nothing is acknowledged before it is replicated
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"plain", key=b"k")
    finally:
        await plain.stop()

    txn = kafka.make_transactional_producer(settings, f"factories-{uuid.uuid4().hex[:8]}")
    await txn.start()
    try:
        async with txn.transaction():
            await txn.send_and_wait(topic, b"committed", key=b"k")
        await txn.begin_transaction()
        await txn.send_and_wait(topic, b"aborted", key=b"k")
        await txn.abort_transaction()
        async with txn.transaction():
            await txn.send_and_wait(topic, b"after-abort", key=b"k")
    finally:
        await txn.stop()

    group = kafka.group_id(settings, f"factories-{uuid.uuid4().hex[:8]}")
    assert group.startswith(settings.topic_prefix)

    async def read(want: int) -> list[bytes]:
        consumer = kafka.make_consumer(settings, topic, group_id=group)
        await consumer.start()
        got: list[bytes] = []
        try:
            for _ in range(60):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(record.value for record in records)
                if len(got) >= want:
                    break
            await consumer.commit()  # manual commit: auto-commit is off
        finally:
            await consumer.stop()
        return got

    assert await read(3) == [b"plain", b"committed", b"after-abort"]  # the aborted record is never seen
    assert await read(0) == []  # the group resumes after its committed offset

    check = kafka.make_consumer(settings, group_id=None)
    await check.start()
    try:
        end = (await check.end_offsets([TopicPartition(topic, 0)]))[TopicPartition(topic, 0)]
        assert end >= 6  # 3 records + 3 transaction markers: the aborted data is in the log, only hidden
    finally:
        await check.stop()


async def test_ops_server_answers_metrics_healthz_and_readyz() -> None:
    state = {"ready": False}
    runner = await metrics.serve_ops("127.0.0.1", 0, lambda: (state["ready"], {"broker": "test"}))
    try:
        base = f"http://127.0.0.1:{metrics.bound_port(runner)}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/metrics") as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"].startswith("text/plain")
                assert "python_info" in await answer.text() or "process_" in await answer.text()
            async with session.get(base + "/healthz") as answer:
                assert answer.status == 200
            async with session.get(base + "/readyz") as answer:
                assert answer.status == 503
                assert await answer.json() == {"ready": False, "broker": "test"}
            state["ready"] = True
            async with session.get(base + "/readyz") as answer:
                assert answer.status == 200
    finally:
        await runner.cleanup()
