"""Helpers of the dedup tests: the service's settings on a test prefix, CDRs and fee records as the ingress writes
them (producing and reading back: tests/kafka_helpers.py)."""

from __future__ import annotations

import os
from typing import Any

import orjson

from kafka_helpers import PARTITIONS, committed_offsets, produce, read_all, settings_values
from voicecall import topics
from voicecall.dedup.config import DedupSettings as _DedupSettings

__all__ = ["PARTITIONS", "DedupSettings", "cdr", "committed_offsets", "env_for", "fee_record", "produce",
           "read_all", "settings_for"]


class DedupSettings(_DedupSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> DedupSettings:
    return DedupSettings(**settings_values(bootstrap, prefix, **overrides))


def env_for(settings: DedupSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall dedup`` subprocess needs to work on the test's broker and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env.update({
        "VOICECALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VOICECALL_TOPIC_PREFIX": settings.topic_prefix,
        "VOICECALL_METRICS_PORT": "0",
        "VOICECALL_METRICS_HOST": "127.0.0.1",
        "VOICECALL_LOG_FORMAT": "json",
        "VOICECALL_BATCH_TIME": str(settings.batch_time),
        "VOICECALL_BATCH_RECORDS": str(settings.batch_records),
        "VOICECALL_CONSUMER_SESSION_TIMEOUT": str(settings.consumer_session_timeout),
        "VOICECALL_DEDUP_WINDOW": str(settings.dedup_window),
    })
    env.update(extra)
    return env


def cdr(n: int, end: str = "2026-11-23 10:00:00", **changes: Any) -> dict[str, Any]:
    """A voice-callback CDR shaped like the platform's (reference §2 and example F2)."""
    doc: dict[str, Any] = {
        "direction": 0, "spId": "sp-test", "appKey": "app-key-test", "icid": f"icid.{n}",
        "bindNum": "+8675566660000", "sessionId": f"1200_{n}_0_20261123100000@callenabler.home1.com",
        "callerNum": "+8675566660000", "calleeNum": "+8675588880000", "fwdDisplayNum": "+8675566660000",
        "fwdDstNum": "+8675588880001", "callOutStartTime": "2026-11-23 09:58:00",
        "callOutAlertingTime": "2026-11-23 09:58:05", "callOutAnswerTime": "2026-11-23 09:58:09",
        "callOutUnaswRsn": 0, "fwdStartTime": "2026-11-23 09:58:10", "fwdAlertingTime": "2026-11-23 09:58:12",
        "fwdAnswerTime": "2026-11-23 09:58:15", "callEndTime": end, "fwdUnaswRsn": 0, "ulFailReason": 0,
        "sipStatusCode": 0, "recordFlag": 0, "ttsPlayTimes": 0, "ttsTransDuration": 0, "serviceType": "002",
        "hostName": "callenabler245.huaweicaas.com", "userData": f"order-{n}",
    }
    doc.update(changes)
    return doc


def fee_record(doc: dict[str, Any], ce_id: str | None = None
               ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` as the ingress writes a fee record to fee.raw."""
    from voicecall.runtime import cloudevents, times

    headers = cloudevents.headers(cloudevents.TYPE_FEE, "/voicecall/ingress", ce_id=ce_id,
                                  extra=[("voicecall_received", times.now_iso().encode())])
    key = doc["sessionId"].encode() if isinstance(doc.get("sessionId"), str) else None
    return key, orjson.dumps(doc), headers
