"""Helpers of the dedup tests: the service's settings on a test prefix, a ``voicecall dedup`` subprocess's
environment, CDRs and fee records as the ingress writes them (producing and reading back: tests/kafka_helpers.py)."""

from __future__ import annotations

from typing import Any

import orjson

from kafka_helpers import service_env, settings_values
from voicecall import topics
from voicecall.dedup.config import DedupSettings as _DedupSettings


class DedupSettings(_DedupSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> DedupSettings:
    return DedupSettings(**settings_values(bootstrap, prefix, **overrides))


def env_for(settings: DedupSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall dedup`` subprocess needs to work on the test's broker and prefix."""
    return service_env(settings, **{"VOICECALL_DEDUP_WINDOW": str(settings.dedup_window)} | extra)


def cdr(n: int, end: str = "2026-11-23 10:00:00", **changes: Any) -> dict[str, Any]:
    """A voice-callback CDR shaped like the platform's: the fields of rtc_05_0008_1, values like Huawei's demo
    CDR's."""
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
