"""One 3-node Apache Kafka cluster (every node broker and controller, replication 3, min ISR 2) for all the
failover tests: they kill its nodes, so it is theirs alone, started once, and whole again before each test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from failover_helpers import wait_isr

from voicecall.devenv.broker import BrokerError, BrokerHandle, start_broker
from voicecall.devenv.broker.config import BrokerSettings


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    try:
        handle = start_broker("apache", state_dir=tmp_path_factory.mktemp("kafka-cluster"), nodes=3,
                              kafka_lib=BrokerSettings().kafka_lib)
    except BrokerError as exc:
        pytest.fail(f"could not start the 3-node test cluster (CI={os.environ.get('CI', '')!r}): {exc}",
                    pytrace=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
async def whole_cluster(cluster: BrokerHandle) -> AsyncIterator[BrokerHandle]:
    """The cluster with every node running and every replica in sync, before and after the test."""
    await _heal(cluster)
    yield cluster
    await _heal(cluster)


async def _heal(cluster: BrokerHandle) -> None:
    await asyncio.to_thread(cluster.start_nodes, range(1, len(cluster.nodes) + 1))
    await wait_isr(cluster.bootstrap, len(cluster.nodes), timeout=90)
