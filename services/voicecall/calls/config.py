"""Settings of ``voicecall calls``: the shell's (batching, timeouts) plus the CDR grace and the retention."""

from __future__ import annotations

from pydantic import Field

from voicecall.runtime import config
from voicecall.runtime.stage import StageSettings


class CallsSettings(StageSettings):
    # The platform pushes a CDR when the call ends and re-pushes it at most 6 times, an hour apart; 7 h is those six
    # hours plus margin.
    calls_cdr_grace: config.Duration = Field(
        7 * 3600.0, gt=0, description="how long after its disconnect an ended call may wait for its CDR before it is "
                                      "flagged missing")
    calls_retention: config.Duration = Field(
        14 * 86400.0, gt=0, description="how long a call stays (in the state and on the compacted topic) after its "
                                        "newest input; then it is removed with a tombstone")
    calls_timer_interval: config.Duration = Field(
        2.0, gt=0, le=60, description="how often the timers (missing CDRs, retention) are checked")
    # ~3.5 KiB each, the packed ones ~0.7 KiB. Size it to the calls a partition has in progress: its share of the call
    # rate x a call's span from first push to recording event.
    calls_hot: int = Field(8192, ge=1, le=1_000_000, description="calls kept decoded per partition (the calls in "
                                                                 "progress, whose next input then costs no unpacking)")
