"""The faster murmur2 partitioner puts every key where aiokafka's (and Java's) default partitioner does."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2 as reference

from voicecall.runtime.partition import murmur2, partitioner


def test_same_hash_and_partition_as_aiokafka() -> None:
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randint(0, 300)) for _ in range(3000)]
    keys += [b"1200_366_0_20161228102743@callenabler.home1.com", "会话-ü".encode()]
    for key in keys:
        assert murmur2(key) == reference(key), key
        for count in (1, 3, 12, 50):
            parts = list(range(count))
            assert partitioner(key, parts, parts) == DefaultPartitioner()(key, parts, parts)


def test_no_key_picks_an_available_partition() -> None:
    assert partitioner(None, [0, 1, 2], [2]) == 2
    assert partitioner(None, [0, 1, 2], []) in (0, 1, 2)
