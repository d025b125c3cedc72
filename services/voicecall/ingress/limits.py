"""What the broker takes: the largest record of each topic the ingress writes, learned from the broker.

Kafka refuses a record batch larger than the topic's ``max.message.bytes`` (``MessageSizeTooLarge``), and the
producer refuses a record larger than its ``max_request_size``. A record alone in its batch takes
:data:`BATCH_HEADER` bytes more than itself, so the largest record a topic takes is
``min(max.message.bytes, max_request_size) - BATCH_HEADER``. The ingress checks every record against it when the
record is built, before the push is answered (``413`` when it cannot fit), and the drainer checks every spooled
record again: a record the broker would refuse is never handed to the producer.

``max.message.bytes`` is read with the admin client (``DescribeConfigs``) before the producer starts and again every
:data:`LEARN_EVERY` seconds; until the broker has answered, Kafka's default is assumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from voicecall.runtime import deadletter, logging as vlog
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import MAX_BATCH_SIZE, MAX_REQUEST_SIZE, make_admin
from voicecall.runtime.record import Record

log = vlog.get("ingress.limits")

BATCH_HEADER = 61  # a v2 record batch's header
KAFKA_DEFAULT = 1_048_588  # Kafka's default message.max.bytes
NEAR = 8192  # a record whose key and value are this far below its limit fits whatever its headers
LEARN_EVERY = 300.0
SETTING = "max.message.bytes"


def record_size(record: Record) -> int:
    """An upper bound of the record's bytes inside a v2 record batch (each varint counted at its widest)."""
    size = 5 + 1 + 10 + 5 + 5 + 5 + 5  # length, attributes, timestamp and offset deltas, key/value lengths, count
    size += len(record.key or b"") + len(record.value or b"")
    for name, data in record.headers:
        size += 10 + len(name.encode("utf-8", "surrogateescape")) + len(data or b"")
    return size


class Limits:
    """The largest record per topic; ``fits`` is the check, ``near`` its O(1) fast path for the request path."""

    def __init__(self, topics: Iterable[str], deadletter_topic: str, deadletter_max_payload: int) -> None:
        self.deadletter_topic = deadletter_topic
        self.configured_payload = deadletter_max_payload
        self.max_message = dict.fromkeys([*topics, deadletter_topic], KAFKA_DEFAULT)
        self.learned = False
        self.largest: dict[str, int] = {}
        self.near = 0  # key + value below this: fits on every topic, no need to count the headers
        self.deadletter_payload = deadletter_max_payload
        self._derive()

    def _derive(self) -> None:
        self.largest = {topic: min(size, MAX_REQUEST_SIZE) - BATCH_HEADER for topic, size in self.max_message.items()}
        self.near = min(self.largest.values()) - NEAR
        room = self.largest[self.deadletter_topic] - deadletter.ENVELOPE
        self.deadletter_payload = max(1024, min(self.configured_payload, room))

    def update(self, max_message: dict[str, int]) -> None:
        changed = {t: v for t, v in max_message.items() if t in self.max_message and self.max_message[t] != v}
        if changed:
            log.info("broker limits", **{t: v for t, v in changed.items()})
        self.max_message.update({t: v for t, v in max_message.items() if t in self.max_message})
        self.learned = True
        self._derive()

    def fits(self, record: Record) -> bool:
        if len(record.key or b"") + len(record.value or b"") < self.near:
            return True
        return record_size(record) <= self.largest.get(record.topic, KAFKA_DEFAULT - BATCH_HEADER)

    def batch_size(self) -> int:
        """The producer's batch size: never more than a topic takes (a batch of many records must fit too)."""
        return max(1024, min(MAX_BATCH_SIZE, min(self.largest.values())))


async def learn(settings: CommonSettings, limits: Limits) -> bool:
    """Ask the broker for each topic's ``max.message.bytes``: True when it told; False when it did not answer
    (limits unchanged, asked again at the next producer start) or did not say (Kafka's default kept)."""
    admin = make_admin(settings, request_timeout_ms=5000)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={SETTING: None}) for topic in limits.max_message])
    except Exception as error:
        log.info("broker limits not known yet", error=repr(error))
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, topic, entries in response.resources:
            for entry in entries if error_code == 0 else ():
                if entry[0] == SETTING and str(entry[1]).isdigit():
                    found[topic] = int(entry[1])
    if not found:  # no DescribeConfigs ACL, or a broker without the request
        log.warning("broker does not report max.message.bytes; assuming Kafka's default", default=KAFKA_DEFAULT)
    limits.update(found)
    return bool(found)
