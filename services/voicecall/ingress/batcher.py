"""Records of concurrent pushes gathered into one Kafka batch per partition, with one deadline per batch.

``AIOKafkaProducer.send`` costs ~30 µs of CPU per record (a coroutine, a future and a metadata object each).
Appending to a ``BatchBuilder`` costs ~3 µs; the batch goes to the producer with ``send_batch`` (same accumulator,
same idempotent sequence numbers, same acks), and every push in it waits on the batch's one future.

Per partition there is a queue of builders: the last one is open. The first record after a quiet moment starts
one linger timer for all partitions; when it fires, every partition's batches are handed to the producer in the
same loop iteration, closed (aiokafka sends a closed batch at once, without lingering it again), so they leave
together in one produce request. A flusher task per partition submits its batches in order, one at a time
(``send_batch`` waits until the partition's previous batch has left the accumulator), so records of one partition
reach Kafka in the order they were added while the next batch fills.

Each batch has two futures: ``acked`` says what Kafka did (kept by the spool to skip records acknowledged
late), ``answer`` is what pushes wait on: the ack, or ``TimeoutError`` once the batch is older than the deadline.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record


class Batch:
    __slots__ = ("acked", "answer", "builder", "expiry")

    def __init__(self, builder: Any, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.builder = builder
        self.acked: asyncio.Future[None] = loop.create_future()
        self.answer: asyncio.Future[None] = loop.create_future()
        self.expiry = loop.call_later(deadline, self._expire)

    def _expire(self) -> None:
        if not self.answer.done():
            self.answer.set_exception(TimeoutError("Kafka did not acknowledge within the deadline"))
            self.answer.exception()  # retrieved: a batch nobody waits on (a drain's) must not warn at exit

    def settle_from(self, sent: asyncio.Future[Any]) -> None:
        self.settle(asyncio.CancelledError("batch send cancelled") if sent.cancelled() else sent.exception())

    def settle(self, error: BaseException | None) -> None:
        self.expiry.cancel()
        for future in (self.acked, self.answer):
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
                    future.exception()  # as above: waiters still get the error


class _Partition:
    __slots__ = ("flusher", "queue")

    def __init__(self) -> None:
        self.queue: collections.deque[Batch] = collections.deque()  # the last one takes new records
        self.flusher: asyncio.Task[None] | None = None


class Batcher:
    """``add`` a record, get its batch; the batch's futures tell when it is durable."""

    def __init__(self, producer: Callable[[], Any], deadline: float, linger: float = 0.001) -> None:
        self._producer = producer  # the current producer: the publisher may replace it
        self.deadline = deadline
        self.linger = linger
        self._timer: asyncio.TimerHandle | None = None
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._partitions: dict[str, tuple[float, list[int]]] = {}  # topic → (valid until, partitions)

    def partitions(self, topic: str) -> list[int] | None:
        """The topic's partitions in aiokafka's order, from the producer's metadata (None: not known yet).

        Looked up again once a second, not per record: the metadata hands out a new set on every call, and a
        partition count changes rarely (producers learn of it only at their next metadata refresh anyway).
        """
        now = time.monotonic()
        cached = self._partitions.get(topic)
        if cached is not None and now < cached[0]:
            return cached[1]
        known = self._producer().client.cluster.partitions_for_topic(topic)
        if not known:
            return None
        partitions = sorted(known)
        self._partitions[topic] = (now + 1.0, partitions)
        return partitions

    async def wait_partitions(self, topic: str) -> list[int]:
        """:meth:`partitions`, waiting for the producer's metadata of the topic first."""
        await self._producer().partitions_for(topic)
        partitions = self.partitions(topic)
        if not partitions:
            raise LookupError(f"no partitions known for topic {topic}")
        return partitions

    def add(self, record: Record, partitions: list[int]) -> Batch:
        tp = (record.topic, partitioner(record.key, partitions, partitions))
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        queue = part.queue
        if not queue or queue[-1].builder.append(timestamp=None, key=record.key, value=record.value,
                                                 headers=record.headers) is None:
            batch = Batch(self._producer().create_batch(), asyncio.get_running_loop(), self.deadline)
            if batch.builder.append(timestamp=None, key=record.key, value=record.value,
                                    headers=record.headers) is None:
                batch.settle(ValueError(f"record of {len(record.value or b'')} bytes does not fit in a batch"))
                return batch
            queue.append(batch)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush_all)
        return queue[-1]

    def _flush_all(self) -> None:
        self._timer = None
        for tp, part in self._parts.items():
            if part.queue and part.flusher is None:
                part.flusher = asyncio.create_task(self._flush(tp, part))

    async def _flush(self, tp: tuple[str, int], part: _Partition) -> None:
        queue = part.queue
        try:
            while queue:
                batch = queue.popleft()
                batch.builder.close()  # lingered here already; and nothing may append to it from now on
                try:
                    sent = await self._producer().send_batch(batch.builder, tp[0], partition=tp[1])
                except Exception as error:
                    batch.settle(error)
                    continue
                sent.add_done_callback(batch.settle_from)
        finally:
            part.flusher = None

    async def flushed(self) -> None:
        """Every batch handed to the producer (call before ``producer.stop()``, which then waits for the acks)."""
        if self._timer is not None:
            self._timer.cancel()
            self._flush_all()
        while flushers := [p.flusher for p in self._parts.values() if p.flusher is not None]:
            await asyncio.gather(*flushers, return_exceptions=True)

