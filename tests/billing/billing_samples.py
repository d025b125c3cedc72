"""Fee records from the reference (§3.2), verbatim where the reference has them, for table tests."""

from __future__ import annotations

from typing import Any

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

# F5: the fragments of the official callback example, completed with the fields every CDR has. The fragment has no
# callOutAnswerTime: leg A is then unanswered as far as this record says.
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
