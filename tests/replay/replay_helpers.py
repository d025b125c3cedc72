"""Helpers of the replay tests: an isolated topic set (:class:`Area`) and fee records to replay (reading back:
tests/kafka_helpers.py)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from kafka_helpers import service_env
from voicecall import topics
from voicecall.runtime import cloudevents


@dataclass
class Area:
    settings: topics.TopicSettings

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    def topic(self, suffix: str) -> str:
        return topics.name(self.settings, suffix)

    def env(self) -> dict[str, str]:
        """The environment a `voicecall …` subprocess needs to see this area."""
        return service_env(self.settings)


def fee_headers(session_id: str, ce_id: str | None = None) -> cloudevents.Headers:
    return cloudevents.headers(cloudevents.TYPE_FEE, "/test/replay", ce_id=ce_id or f"fee-{session_id}")


def fee_value(session_id: str, n: int) -> bytes:
    return orjson.dumps({"sessionId": session_id, "direction": 0, "spId": "sp", "appKey": "ak", "bindNum": "+861",
                         "callerNum": "+862", "calleeNum": "+863", "fwdAnswerTime": "", "n": n})
