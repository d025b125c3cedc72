"""One transactional producer per input partition number, and the one transaction per batch it commits.

``transactional.id = f"{group}-{input topic}-{partition}"``: the same id for whoever owns the partition, so
starting it fences the previous owner (see :meth:`PartitionProducer.start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from voicecall.runtime import config
from voicecall.runtime.kafka import make_transactional_producer
from voicecall.runtime.partition import partitioner
from voicecall.runtime.record import Record

_LAYOUT_TTL = 30.0


class Layouts:
    """Output topics' partition lists, from metadata at most ``ttl`` seconds old (partitions are added rarely).

    Partitions are chosen by the shell (the same murmur2 as the default partitioner): aiokafka would otherwise
    rebuild the topic's partition lists for every record."""

    def __init__(self, ttl: float = _LAYOUT_TTL) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[list[int], float]] = {}

    async def get(self, producer: Any, topic: str) -> list[int]:
        now = time.monotonic()
        cached = self._cache.get(topic)
        if cached is None or now - cached[1] > self.ttl:
            cached = (sorted(await producer.partitions_for(topic)), now)
            self._cache[topic] = cached
        return cached[0]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class PartitionProducer:
    """The producer of one input partition number; every record it writes is inside a transaction."""

    def __init__(self, settings: config.CommonSettings, transactional_id: str, *, partition: int, group: str,
                 changelog: str | None, layouts: Layouts, transaction_timeout: float) -> None:
        self.partition = partition
        self.group = group
        self.changelog = changelog
        self.layouts = layouts
        self.producer = make_transactional_producer(settings, transactional_id,
                                                    transaction_timeout_ms=int(transaction_timeout * 1000))

    async def start(self) -> None:
        """Start and fence: an empty transaction waits for InitProducerId, after which the previous owner is fenced
        and the transaction it left open (if any) is aborted — its committed offset and changelog are final."""
        await self.producer.start()
        await self.producer.begin_transaction()
        await self.producer.commit_transaction()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self.producer.partitions_for(topic))

    async def commit(self, records: list[Record], offsets: dict[TopicPartition, int]) -> None:
        """One transaction: ``records`` plus the consumed ``offsets`` (the next offset to read, per input
        partition; none for a transaction of timer outputs alone). A changelog record goes to the changelog
        partition numbered like the input; every other record is partitioned by its key. On failure the transaction
        is aborted (when it still can be) and the error raised: the partition must then be prepared again."""
        producer = self.producer
        sends: list[asyncio.Future[Any]] = []
        try:
            await producer.begin_transaction()
            # The offsets first: a produce the broker must verify as part of the transaction (KIP-890) while the
            # coordinator is still adding the group to it is refused with NotEnoughReplicas and retried 100 ms later.
            if offsets:  # a transaction of timer outputs alone consumed nothing
                await producer.send_offsets_to_transaction(offsets, self.group)
            layout: dict[str, list[int]] = {}
            for out in records:
                if out.topic == self.changelog:
                    partition = self.partition
                else:
                    choices = layout.get(out.topic)
                    if choices is None:
                        choices = layout[out.topic] = await self.layouts.get(producer, out.topic)
                    partition = partitioner(out.key, choices, choices)
                sends.append(await producer.send(out.topic, value=out.value, key=out.key, partition=partition,
                                                 headers=out.headers))
            await producer.commit_transaction()
        except Exception as error:
            for sent in sends:  # the transaction's error is the one that counts; don't log each send's again
                sent.add_done_callback(_retrieve)
            if not isinstance(error, ProducerFenced):  # a fenced producer can only be closed
                # aiokafka refuses (raises) when the transaction can no longer be aborted, e.g. after a fatal error.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), 10)
            raise

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.producer.stop(), 10)
