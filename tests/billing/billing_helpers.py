"""Helpers of the billing tests: the service's settings on a test prefix and a ``voicecall billing`` subprocess's
environment (producing and reading back: tests/kafka_helpers.py); fee records of Huawei's own examples (its old RTC
demo ``HostingVoiceEventDemoImpl``, and the callback CDR page ``rtc_05_0008_1``), verbatim where they are complete,
for table tests."""

from __future__ import annotations

from typing import Any

from kafka_helpers import service_env, settings_values
from voicecall import topics
from voicecall.billing.config import BillingSettings as _BillingSettings


class BillingSettings(_BillingSettings, topics.TopicSettings):
    """The service's settings plus the topic settings ``topics.create`` needs."""


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> BillingSettings:
    return BillingSettings(**settings_values(bootstrap, prefix, **overrides))


def env_for(settings: BillingSettings, **extra: str) -> dict[str, str]:
    """The environment a ``voicecall billing`` subprocess needs to work on the test's broker and prefix."""
    return service_env(settings, **{
        "VOICECALL_BILLING_TARIFF": ",".join(f"{k}={v}" for k, v in settings.billing_tariff.items()),
        "VOICECALL_BILLING_CURRENCY": settings.billing_currency,
    } | extra)


# F2: the old Huawei demo's callback CDR (no serviceType; doubled spaces; endToEndID extra; fwdAlertingTime's
# year 2018 is a typo in the source and must not matter).
F2: dict[str, Any] = {
    "appKey": "cJU9QxBt53ZytKo9X8C35Z5c6pvi", "bindNum": "+8675566660000", "callEndTime": "2016-12-26  01:19:46",
    "callOutAlertingTime": "2016-12-26  01:16:26", "callOutAnswerTime": "2016-12-26  01:16:31",
    "callOutStartTime": "2016-12-26  01:16:20", "callOutUnaswRsn": 0, "calleeNum": "+8675588880000",
    "callerNum": "+8675566660000", "direction": 0, "fwdAlertingTime": "2018-04-26  01:16:38",
    "fwdAnswerTime": "2016-12-26  01:16:45", "fwdDisplayNum": "+8675566660000", "fwdDstNum": "+8675588880001",
    "fwdStartTime": "2016-12-26  01:16:32", "fwdUnaswRsn": 0,
    "icid": "9c2012a5bcb2721681009cb6c245fdc3.3663053204.1117803.14", "recordFlag": 0,
    "sessionId": "1200_366_0_20161228102743@callenabler.home1.com", "spId": "dial010314322991", "ulFailReason": 0,
    "endToEndID": 543207693,
}

# F5: the fragments of the official callback example (rtc_05_0008_1), completed with the fields every CDR has. The
# fragment has no callOutAnswerTime: leg A is then unanswered as far as this record says.
F5: dict[str, Any] = {
    "direction": 0, "spId": "CaaS_Test_01", "appKey": "ka4k3****h1n4", "bindNum": "+8675528****02",
    "sessionId": "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com",
    "callerNum": "+8675528****02", "calleeNum": "+86138****0021",
    "fwdStartTime": "2019-01-24 03:04:31", "fwdAlertingTime": "2019-01-24 03:04:36",
    "fwdAnswerTime": "2019-01-24 03:04:38", "callEndTime": "2019-01-24 03:04:49", "fwdUnaswRsn": 0,
    "ulFailReason": 0, "sipStatusCode": 0, "callOutStartTime": "2019-01-24 03:04:24",
    "serviceType": "002", "hostName": "callenabler245.huaweicaas.com",
}


def f5_with_a_answered() -> dict[str, Any]:
    """F5 with the A leg answered 6 s after the call-out started (a plausible complete record)."""
    return {**F5, "callOutAlertingTime": "2019-01-24 03:04:27", "callOutAnswerTime": "2019-01-24 03:04:30"}


def notification(**changes: Any) -> dict[str, Any]:
    """A voice-notification CDR (serviceType 001): one leg, answered at callOutAnswerTime."""
    base: dict[str, Any] = {
        "direction": 0, "spId": "CaaS_Test_01", "appKey": "ka4k3****h1n4", "bindNum": "+8675528****02",
        "sessionId": "1201_700_4294967295_20190124040000@callenabler245.huaweicaas.com",
        "callerNum": "+8675528****02", "calleeNum": "+86138****0021",
        "callOutStartTime": "2019-01-24 04:00:00", "callOutAlertingTime": "2019-01-24 04:00:03",
        "callOutAnswerTime": "2019-01-24 04:00:07", "callEndTime": "2019-01-24 04:01:07",
        "ulFailReason": 0, "serviceType": "001", "hostName": "callenabler245.huaweicaas.com",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}
