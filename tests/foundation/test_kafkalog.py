"""aiokafka's retry messages while a broker is away: one WARNING per broker per change of state (down, still down a
minute later, reachable again) with a count; NotEnoughReplicas retries at DEBUG with why, unless they persist;
routine coordinator moves at DEBUG; everything else untouched. Each recognised message is checked against the
installed aiokafka's source, so a reworded message fails here instead of flooding the logs again."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import aiokafka
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import NotEnoughReplicasError, NotLeaderForPartitionError
from structlog.testing import capture_logs

from voicecall.runtime import kafkalog
from voicecall.runtime.kafkalog import BrokerWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: Any, name: str = "aiokafka", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def refused(node: int = 2) -> logging.LogRecord:
    return record("Unable connect to node with id %s: %s", node,
                  ConnectionRefusedError(111, f"Connect call failed ('127.0.0.1', 1900{node})"))


def fetch_failed(node: int = 2) -> logging.LogRecord:
    return record("Failed fetch messages from %s: %s", node, "NodeNotReadyError: Attempt to send a request to node "
                  f"which is not ready (node id {node}).", name="aiokafka.consumer.fetcher")


def test_a_broker_outage_is_one_line_down_and_one_line_back_with_the_count() -> None:
    clock = Clock()
    watch = BrokerWatch(clock)
    with capture_logs() as logs:
        for i in range(300):
            clock.now += 0.1
            assert watch.filter(refused() if i % 2 else fetch_failed()) is False
        watch.reached("2", "127.0.0.1:19002")  # a connection of just before the outage, not yet seen closed
        clock.now += 1.0
        watch.reached("2", "127.0.0.1:19002")
        watch.reached("2", "127.0.0.1:19002")  # a connection while it is up says nothing
    assert [entry["event"] for entry in logs] == ["Kafka broker unreachable, retrying", "Kafka broker reachable again"]
    down, back = logs
    assert down["log_level"] == back["log_level"] == "warning"
    assert down["broker"] == back["broker"] == "2"
    assert "not ready" in down["error"]
    assert back["errors"] == 300 and back["seconds"] == pytest.approx(30.9, abs=0.2)


def test_a_long_outage_is_recalled_at_most_once_a_minute() -> None:
    clock = Clock()
    watch = BrokerWatch(clock)
    with capture_logs() as logs:
        for _ in range(1500):  # 150 s of retries every 100 ms
            clock.now += 0.1
            watch.filter(refused(3))
    assert [entry["event"] for entry in logs] == ["Kafka broker unreachable, retrying",
                                                  "Kafka broker still unreachable", "Kafka broker still unreachable"]
    assert [entry["seconds"] for entry in logs[1:]] == [60, 120]


def test_each_broker_has_its_own_state_and_an_address_names_its_node() -> None:
    clock = Clock()
    watch = BrokerWatch(clock)
    with capture_logs() as logs:
        watch.reached("1", "127.0.0.1:19001")  # first connection: learns the address, nothing to say
        watch.filter(refused(2))
        watch.filter(record("Got error produce response: %s", "KafkaConnectionError: Connection at 127.0.0.1:19001 "
                            "closed", name="aiokafka.producer.sender", level=logging.WARNING))
        watch.filter(record('Unable connect to "%s:%s": %s', "127.0.0.1", 19001, "[Errno 111] Connection refused"))
        clock.now += 2
        watch.reached("1", "127.0.0.1:19001")
    assert [(entry["event"], entry["broker"]) for entry in logs] == [
        ("Kafka broker unreachable, retrying", "2"), ("Kafka broker unreachable, retrying", "1"),
        ("Kafka broker reachable again", "1")]
    assert logs[-1]["errors"] == 2 and set(watch.down) == {"2"}


def test_coordinator_moves_and_rebalances_are_routine() -> None:
    watch = BrokerWatch(Clock())
    with capture_logs() as logs:
        for rec in (record("Failed fetch offsets from %s: %s", 1, "[Error 6] NotLeaderForPartitionError: "
                           "TopicPartition(topic='t.fee.raw', partition=0)", name="aiokafka.consumer.fetcher"),
                    record("Heartbeat failed for group %s because it is rebalancing", "g", level=logging.WARNING),
                    record("Marking the coordinator dead (node %s)for group %s.", 3, "g", level=logging.WARNING),
                    record("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError"),
                    record("Heartbeat failed for group %s: coordinator (node %s) is either not started or not valid",
                           "g", 3, level=logging.WARNING),
                    record("Heartbeat session expired - marking coordinator dead")):
            assert watch.filter(rec) is False
    assert all(entry["log_level"] == "debug" for entry in logs) and not watch.down


def test_not_enough_replicas_is_debug_with_why_until_it_persists() -> None:
    clock = Clock()
    watch = BrokerWatch(clock)
    tp = TopicPartition("voicecall.fee.unique", 4)
    retried = "Got error produce response on topic-partition %s, retrying. Error: %s"
    with capture_logs() as logs:
        for _ in range(3):  # a transaction's write retried for a moment: nothing above DEBUG
            clock.now += 0.1
            assert watch.filter(record(retried, tp, NotEnoughReplicasError, level=logging.WARNING)) is False
        clock.now += 60  # a new episode, persisting for 45 s
        for _ in range(450):
            clock.now += 0.1
            watch.filter(record(retried, tp, NotEnoughReplicasError, level=logging.WARNING))
        watch.filter(record(retried, tp, NotLeaderForPartitionError, level=logging.WARNING))
    levels = [entry["log_level"] for entry in logs]
    assert levels.count("warning") == 1 and levels.count("debug") == len(levels) - 1
    warning = next(entry for entry in logs if entry["log_level"] == "warning")
    assert warning["partition"] == "voicecall.fee.unique-4" and warning["seconds"] == 30
    assert "min.insync.replicas" in warning["hint"]
    assert "transaction" in logs[0]["why"] and "nothing is lost" in logs[0]["why"]
    assert logs[-1]["error"] == "NotLeaderForPartitionError" and "leader moved" in logs[-1]["why"]


def test_other_records_pass_unchanged() -> None:
    watch = BrokerWatch(Clock())
    assert watch.filter(record("Topic %s not found in cluster metadata", "x", name="aiokafka.cluster"))
    assert watch.filter(record("Unable connect to node with id %s: %s", 1, "x", name="voicecall.other"))


STRINGS_OF_AIOKAFKA = """
import ast, json, pathlib, aiokafka
strings = set()
for path in pathlib.Path(aiokafka.__file__).parent.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
print(json.dumps(sorted(strings)))
"""


def test_every_recognised_message_is_one_aiokafka_logs() -> None:
    # Every string literal of aiokafka (adjacent literals are one constant in the AST), read in a fresh interpreter:
    # CPython 3.11's ast.parse can fail with "recursion depth mismatch" in a process that ran the asyncio tests.
    result = subprocess.run([sys.executable, "-c", STRINGS_OF_AIOKAFKA], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    strings = set(json.loads(result.stdout))
    for message in [*kafkalog.TROUBLE, *kafkalog.ROUTINE, kafkalog.RETRIED_PRODUCE]:
        assert message in strings, f"aiokafka {aiokafka.__version__} no longer logs {message!r}"


def test_the_shared_setup_watches_every_process() -> None:
    from aiokafka.client import AIOKafkaClient

    from voicecall.runtime import logging as vlog

    vlog.setup("INFO", "json")
    assert any(kafkalog.WATCH in handler.filters for handler in logging.getLogger().handlers)
    assert getattr(AIOKafkaClient._get_conn, "voicecall_watch", None) is kafkalog.WATCH
    vlog.setup("INFO", "json")  # a second setup does not wrap twice
    assert getattr(AIOKafkaClient._get_conn, "voicecall_watch", None) is kafkalog.WATCH
