"""The batcher on the real broker: concurrent pushes share a batch, order per partition holds, the deadline answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ingress_helpers import ingress_settings

from kafka_helpers import create_topics
from voicecall import topics
from voicecall.ingress.batcher import Batch, Batcher
from voicecall.ingress.config import IngressSettings
from voicecall.runtime.kafka import make_consumer, make_producer
from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record


@contextlib.asynccontextmanager
async def fee_batcher(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[tuple[IngressSettings, str, Batcher]]:
    """A batcher with the ingress's defaults over a started producer (stopped afterwards): settings, topic, batcher."""
    settings = ingress_settings(kafka_bootstrap, tmp_path / "spool")
    await create_topics(settings)
    producer = make_producer(settings, linger_ms=settings.ingress_linger_ms, partitioner=partitioner)
    await producer.start()
    try:
        batcher = Batcher(lambda: producer, deadline=10.0, linger=settings.ingress_linger_ms / 1000)  # as Publisher
        yield settings, topics.name(settings, "fee.raw"), batcher
    finally:
        await producer.stop()


async def test_concurrent_records_share_batches_and_keep_their_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    async with fee_batcher(kafka_bootstrap, tmp_path) as (settings, topic, batcher):
        records = [Record(topic, f"call-{i % 7}".encode(), f"{i}".encode(), [("n", str(i).encode())])
                   for i in range(300)]
        partitions = await batcher.wait_partitions(topic)
        assert partitions == [0, 1, 2] == batcher.partitions(topic)
        batches = [batcher.add(r, partitions) for r in records]  # as concurrent requests would, no await between
        distinct = {id(b): b for b in batches}
        assert len(distinct) <= 3 < len(records)  # one open batch per partition took every record
        await asyncio.gather(*(b.wait() for b in distinct.values()))
        assert all(b.acked.done() and b.acked.exception() is None for b in distinct.values())
        await batcher.flushed()

    consumer = make_consumer(settings, topic, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[tuple[bytes, int, bytes]] = []
        while len(got) < len(records):
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, f"only {len(got)} of {len(records)} records arrived"
            for tp, messages in batch.items():
                got.extend((m.key, tp.partition, m.value) for m in messages)
    finally:
        await consumer.stop()
    # Same partitions as aiokafka's own partitioner, and per key the order of adding.
    for key, partition, _ in got:
        assert partition == partitioner(key, [0, 1, 2], [0, 1, 2])
    for k in range(7):
        values = [int(v) for key, _, v in got if key == f"call-{k}".encode()]
        assert values == sorted(values) and len(values) == len([i for i in range(300) if i % 7 == k])


async def test_without_linger_records_that_come_while_a_batch_is_out_share_the_next(kafka_bootstrap: str,
                                                                                    tmp_path: Path) -> None:
    async with fee_batcher(kafka_bootstrap, tmp_path) as (settings, topic, batcher):
        assert settings.ingress_linger_ms == 0 == batcher.linger
        partitions = await batcher.wait_partitions(topic)
        batches = []
        for i in range(200):  # one record per loop iteration, as pushes trickling in one by one
            batches.append(batcher.add(Record(topic, b"one-call", f"{i}".encode(), []), partitions))
            await asyncio.sleep(0)
        distinct = {id(b): b for b in batches}
        await asyncio.gather(*(b.wait() for b in distinct.values()))
        await batcher.flushed()
    # Each iteration's record would be a batch (and a produce request) of its own if nothing waited for the broker.
    assert len(distinct) < 50, f"{len(distinct)} batches for 200 records"


async def test_records_that_come_while_a_batch_is_unanswered_all_wait_in_one_open_batch(kafka_bootstrap: str,
                                                                                      tmp_path: Path) -> None:
    async with fee_batcher(kafka_bootstrap, tmp_path) as (_, topic, batcher):
        partitions = await batcher.wait_partitions(topic)
        first = batcher.add(Record(topic, b"one-call", b"0", []), partitions)
        later = []
        while not first.answered and len(later) < 500:  # one record per loop iteration (500 fit in one batch)
            later.append(batcher.add(Record(topic, b"one-call", f"{len(later) + 1}".encode(), []), partitions))
            await asyncio.sleep(0)
        # The first batch took the records of the iteration or two before the linger timer handed it over; every
        # record after that waits in one open batch (closed at the next record, each would wait a request longer).
        rest = [batch for batch in later if batch is not first]
        assert len(rest) >= 2 and all(batch is rest[0] for batch in rest), f"{len({id(b) for b in rest})} batches"
        await rest[0].wait()
        await batcher.flushed()


async def test_when_a_batchs_pushes_hear_their_answer_the_next_batch_is_already_with_the_producer(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    async with fee_batcher(kafka_bootstrap, tmp_path) as (_, topic, batcher):
        partitions = await batcher.wait_partitions(topic)
        first = batcher.add(Record(topic, b"one-call", b"0", []), partitions)
        second = first
        while second is first:  # a record per loop iteration until one waits for the next batch
            second = batcher.add(Record(topic, b"one-call", b"1", []), partitions)
            await asyncio.sleep(0)
        assert not first.answered and not second.builder.closed()
        await first.wait()
        # This task wakes in the loop iteration after the answer. The flusher, woken by aiokafka's own future, has
        # handed the next batch over in that iteration already, before aiokafka's sender looked for batches to send;
        # woken a step later, through more futures, it would miss the sender, and the batch would wait a request.
        assert second.builder.closed()
        await second.wait()
        assert first.error is None and second.error is None
        await batcher.flushed()


async def test_a_batch_not_acked_in_time_answers_timeout_and_keeps_waiting_for_kafka() -> None:
    loop = asyncio.get_running_loop()
    batch = Batch(builder=None, loop=loop, deadline=0.2)
    started = loop.time()
    try:
        await batch.wait()
    except TimeoutError:
        waited = loop.time() - started
    else:
        raise AssertionError("a batch nobody acknowledged was answered as durable")
    assert 0.15 < waited < 2.0
    assert not batch.acked.done()  # the spool keeps it and looks again when draining
    batch.settle(None)  # Kafka acknowledges late: the drainer then skips the spooled copy
    assert batch.acked.done() and batch.acked.exception() is None
    late = batch.wait()  # the answer stays what it was
    assert late.done() and isinstance(late.exception(), TimeoutError)


async def test_a_cancelled_push_leaves_the_others_waiting_on_its_batch() -> None:
    loop = asyncio.get_running_loop()
    batch = Batch(builder=None, loop=loop, deadline=10.0)
    cancelled = asyncio.create_task(_await(batch.wait()))
    kept = asyncio.create_task(_await(batch.wait()))
    await asyncio.sleep(0)
    cancelled.cancel()  # a handler cancelled on shutdown (its client gone)
    await asyncio.sleep(0)
    assert cancelled.cancelled() and not kept.done()
    batch.settle(None)
    assert await kept == "durable"
    assert batch.wait().result() is None


async def _await(future: asyncio.Future[None]) -> str:
    await future
    return "durable"
