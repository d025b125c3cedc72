"""The two push bodies as msgspec types: a fast first check of a decoded push before the JSON Schema's.

The checked-in ``schemas/*.json`` stay the contract. These types accept a subset of what the schemas accept (a test
with hypothesis-generated documents holds them to it, field by field); whatever they refuse goes on to the compiled
schema, which decides and words the error. So a push is accepted exactly when its schema accepts it, and a usual
push costs one ``msgspec.convert`` of the dict orjson already made instead of the schema's generated Python.
Refused by the types but accepted by the schemas: an integral float where an integer is asked for (``1.0``), and
nothing else that the test has found.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Time = str | None  # UTC yyyy-MM-dd HH:mm:ss; "" or null when the event did not happen
Code = int | str | None  # an integer code, sometimes sent as a string
Text = str | int | float | None  # a string; numbers are tolerated and kept verbatim
SessionId = Annotated[str, Meta(min_length=1)]


class FeeInfo(Struct):
    """schemas/feeinfo.schema.json: every documented field and its types; other fields are not looked at."""

    sessionId: SessionId
    direction: Code = None
    spId: Text = None
    appKey: Text = None
    icid: Text = None
    bindNum: Text = None
    callerNum: Text = None
    calleeNum: Text = None
    fwdDisplayNum: Text = None
    fwdDstNum: Text = None
    callInTime: Time = None
    fwdStartTime: Time = None
    fwdAlertingTime: Time = None
    fwdAnswerTime: Time = None
    callEndTime: Time = None
    fwdUnaswRsn: Code = None
    failTime: Time = None
    ulFailReason: Code = None
    sipStatusCode: Code = None
    callOutStartTime: Time = None
    callOutAlertingTime: Time = None
    callOutAnswerTime: Time = None
    callOutUnaswRsn: Code = None
    dynIVRStartTime: Time = None
    dynIVRPath: Text = None
    recordFlag: Code = None
    recordStartTime: Time = None
    recordObjectName: Text = None
    recordBucketName: Text = None
    recordDomain: Text = None
    recordFileDownloadUrl: Text = None
    ttsPlayTimes: Code = None
    ttsTransDuration: Code = None
    serviceType: Text = None
    hostName: Text = None
    userData: Text = None


class FeePush(Struct):
    """schemas/fee_push.schema.json."""

    eventType: Literal["fee"]
    feeLst: Annotated[list[FeeInfo], Meta(min_length=1, max_length=50)]


class StatusInfo(Struct):
    """``$defs/StatusInfo`` of schemas/status_push.schema.json."""

    sessionId: SessionId
    timestamp: Time = None
    caller: Text = None
    called: Text = None
    stateCode: Code = None
    stateDesc: Text = None
    partyType: Code = None
    digitInfo: Text = None
    userData: Text = None


class StatusPush(Struct):
    """schemas/status_push.schema.json."""

    eventType: Annotated[str, Meta(min_length=1)]
    statusInfo: StatusInfo


def fits(doc: Any, shape: type[Struct]) -> bool:
    """Whether the decoded push ``doc`` has ``shape`` (False sends it on to the JSON Schema)."""
    try:
        msgspec.convert(doc, shape)
    except msgspec.ValidationError:
        return False
    return True
