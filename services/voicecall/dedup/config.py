"""Settings of ``voicecall dedup``: the shell's (batching, timeouts) plus the dedup window."""

from __future__ import annotations

from pydantic import Field

from voicecall.runtime import config
from voicecall.runtime.stage import StageSettings


class DedupSettings(StageSettings):
    # The platform re-pushes for 6 hours and support staff re-push by hand days later, hence a week.
    dedup_window: config.Duration = Field(7 * 86400.0, gt=0, description="how long (by call end time) a CDR is "
                                                                         "recognised when it comes again")
    # One bad record must not move the window's clock into the future and expire everything.
    dedup_max_clock_skew: config.Duration = Field(3600.0, ge=0, description="a callEndTime further than this ahead "
                                                                            "of the receive time is not believed")
