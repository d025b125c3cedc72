"""Consumer lag of a stage reading a transactional topic: every committed transaction ends with a marker (one
offset, not a record), so an input processed to its end must show lag 0, not 1 per partition."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import TopicPartition
from billing_helpers import BillingSettings, notification
from prometheus_client import REGISTRY

from kafka_helpers import read_all
from voicecall import topics
from voicecall.billing import cli
from voicecall.runtime import cloudevents
from voicecall.runtime.kafka import make_consumer, make_transactional_producer

HEADERS = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/dedup", "fixed-id", "2019-01-24T04:01:07.000Z")


def lag(partition: int) -> float | None:
    return REGISTRY.get_sample_value("voicecall_stage_consumer_lag", {"stage": "billing", "partition": str(partition)})


async def test_lag_is_zero_once_a_transactional_input_is_processed(settings: BillingSettings) -> None:
    topic = topics.name(settings, "fee.unique")
    producer = make_transactional_producer(settings, f"{settings.topic_prefix}lag-test")
    await producer.start()
    try:
        for batch in range(2):  # two transactions, each ending every partition it wrote to with a marker
            await producer.begin_transaction()
            for partition in (0, 1):
                fee = notification(sessionId=f"lag-{batch}-{partition}")
                await producer.send(topic, orjson.dumps(fee), key=fee["sessionId"].encode(), headers=HEADERS,
                                    partition=partition)
            await producer.commit_transaction()
    finally:
        await producer.stop()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(cli.serve(settings, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        assert len(await read_all(settings, "billing", expect=4, idle=0.5)) == 4
        for _ in range(50):  # the gauge follows within a batch time or two
            lags = [lag(p) for p in range(3)]
            if lags == [0, 0, 0]:
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    reader = make_consumer(settings, group_id=None)
    await reader.start()
    try:
        ends = await reader.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
    finally:
        await reader.stop()
    assert set(ends.values()) == {4}  # two records and two markers each: the markers are what lag 1 came from
    assert lags == [0, 0, 0], lags
