"""Shared fixtures. The suite runs against a real Apache Kafka broker it starts itself (once per session), or
against the cluster named by VOICECALL_TEST_BOOTSTRAP. A broker that cannot be started fails the tests loudly:
never a skip (in CI, CI=true, or anywhere else)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicecall.devenv.broker import BrokerError, BrokerHandle, start_broker, wait_for_kafka
from voicecall.devenv.broker.config import BrokerSettings


@pytest.fixture(scope="session")
def broker_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle | None]:
    """The Apache Kafka broker started for this session, or None when VOICECALL_TEST_BOOTSTRAP names a cluster."""
    if os.environ.get("VOICECALL_TEST_BOOTSTRAP"):
        yield None
        return
    state_dir: Path = tmp_path_factory.mktemp("kafka-session")
    try:
        handle = start_broker("apache", state_dir=state_dir, kafka_lib=BrokerSettings().kafka_lib)
    except BrokerError as exc:
        pytest.fail(f"could not start the test Kafka broker (CI={os.environ.get('CI', '')!r}): {exc}", pytrace=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_handle: BrokerHandle | None) -> str:
    """host:port of the session's Kafka cluster."""
    if broker_handle is None:
        external = os.environ["VOICECALL_TEST_BOOTSTRAP"]
        try:
            wait_for_kafka(external, timeout=60)
        except BrokerError as exc:
            pytest.fail(f"VOICECALL_TEST_BOOTSTRAP={external}: {exc}", pytrace=False)
        return external
    return broker_handle.bootstrap
