"""Records of concurrent pushes gathered into one Kafka batch per partition, with one deadline per batch.

``AIOKafkaProducer.send`` makes a coroutine, a future and a metadata object per record; appending to a
``BatchBuilder`` costs a tenth of that (bench/RESULTS.md, Ingress). The batch goes to the producer with
``send_batch`` (same accumulator, same idempotent sequence numbers, same acks), and every push in it waits on the
batch's one future.

Per partition there is a queue of builders: the last one is open. The first record after a quiet moment starts one
linger timer for all partitions (``VOICECALL_INGRESS_LINGER_MS``; 0: the next loop iteration); when it fires, every
partition's batches are handed to the producer in the same loop iteration, closed (aiokafka sends a closed batch at
once, without lingering it again), so they leave together in one produce request. A flusher task per partition
submits its batches in order, one at a time, each once Kafka has answered the one before, so records of one partition
reach Kafka in the order they were added, and every record that comes while a batch is out waits in the next one,
open (aiokafka has one produce request in flight per broker anyway). The flusher awaits aiokafka's future itself: it
then runs in the loop iteration after the answer, before aiokafka's sender wakes to build its next request, so every
partition's next batch leaves in that one request (woken through a future of ours, the flushers missed it: each
request took half the partitions; bench/RESULTS.md, eighth pass).

Each batch has a future ``acked`` that says what Kafka did (kept by the spool to skip records acknowledged late),
and a future per waiting push (:meth:`Batch.wait`): the ack, or ``TimeoutError`` once the batch is older than the
deadline. A push's own future, not a shared one, so that a cancelled handler cancels nothing of the other pushes in
the batch, without ``asyncio.shield`` (two more futures and two Python callbacks per push).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record


class Batch:
    __slots__ = ("acked", "answered", "builder", "error", "expiry", "loop", "waiters")

    def __init__(self, builder: Any, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.builder = builder
        self.loop = loop
        self.acked: asyncio.Future[None] = loop.create_future()
        self.waiters: list[asyncio.Future[None]] = []
        self.answered = False  # then ``error`` is the answer: None for acknowledged
        self.error: BaseException | None = None
        self.expiry = loop.call_later(deadline, self._expire)

    def wait(self) -> asyncio.Future[None]:
        """A future of the caller's own: done when the batch is acknowledged, refused or past its deadline."""
        waiter = self.loop.create_future()
        if self.answered:
            _resolve(waiter, self.error)
        else:
            self.waiters.append(waiter)
        return waiter

    def _answer(self, error: BaseException | None) -> None:
        if not self.answered:
            self.answered, self.error = True, error
            for waiter in self.waiters:
                _resolve(waiter, error)
            self.waiters = []

    def _expire(self) -> None:
        self._answer(TimeoutError("Kafka did not acknowledge within the deadline"))

    def settle_from(self, sent: asyncio.Future[Any]) -> None:
        self.settle(asyncio.CancelledError("batch send cancelled") if sent.cancelled() else sent.exception())

    def settle(self, error: BaseException | None) -> None:
        self.expiry.cancel()
        _resolve(self.acked, error)
        self._answer(error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if not future.done():  # a waiter's handler may have been cancelled
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            future.exception()  # retrieved: a future nobody awaits (a drain's, a cancelled push's) must not warn


class _Partition:
    __slots__ = ("flusher", "queue")

    def __init__(self) -> None:
        self.queue: collections.deque[Batch] = collections.deque()  # the last one takes new records
        self.flusher: asyncio.Task[None] | None = None


class Batcher:
    """``add`` a record, get its batch; the batch's futures tell when it is durable."""

    def __init__(self, producer: Callable[[], Any], deadline: float, linger: float) -> None:
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

    def add(self, record: Record, partitions: list[int], alone: bool = False) -> Batch:
        """``alone``: in a batch of its own (the drainer's way to tell which record a refused batch was about)."""
        tp = (record.topic, partitioner(record.key, partitions, partitions))
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        queue = part.queue
        if alone and queue:
            queue[-1].builder.close()
        if not queue or queue[-1].builder.append(timestamp=None, key=record.key, value=record.value,
                                                 headers=record.headers) is None:
            batch = Batch(self._producer().create_batch(), asyncio.get_running_loop(), self.deadline)
            if batch.builder.append(timestamp=None, key=record.key, value=record.value,
                                    headers=record.headers) is None:
                batch.settle(ValueError(f"record of {len(record.value or b'')} bytes does not fit in a batch"))
                return batch
            queue.append(batch)
        if alone:
            queue[-1].builder.close()
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
                with contextlib.suppress(Exception):  # settle_from answers the batch's pushes
                    await sent
        finally:
            part.flusher = None

    async def flushed(self) -> None:
        """Every batch handed to the producer and answered (call before ``producer.stop()``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._flush_all()
        while flushers := [p.flusher for p in self._parts.values() if p.flusher is not None]:
            await asyncio.gather(*flushers, return_exceptions=True)

