"""One call's timeline per scenario: its status events and the CDR fields that must agree with them.

Every event is an integer number of seconds after the call's start, and the CDR's times are the texts of the same
offsets: answer times are the ``answer`` events' timestamps, ``callEndTime`` the ``disconnect``'s. That keeps the
durations the pipeline derives from second-resolution strings equal to the ones decided here (a recording exists
exactly when the B leg's string-derived talk time is ≥ 3 s).

Legs (per-leg status events in a callback are unconfirmed; this is the project's reading): the platform calls A,
then B. Events of leg A carry ``called`` = A's number and ``caller`` = the number shown to A (``displayNbr``);
events of leg B carry ``called`` = B's number and ``caller`` = the number shown to B (``displayCalleeNbr``); the
one ``disconnect`` carries ``called`` = A's number, as the push pages note for 挂机 events. Notifications and
verification codes have leg A only.
"""

from __future__ import annotations

import functools
import math
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from voicecall.simulator import failures
from voicecall.simulator.failures import Failure
from voicecall.simulator.model import (
    NOT_ASKED,
    RELEASED,
    UNANSWERED,
    UNDER_3S,
    WAV_BYTES_PER_SECOND,
    WAV_HEADER_BYTES,
    CallOptions,
    Recording,
    StatusEvent,
    session_id_stem,
)


@functools.lru_cache(maxsize=8192)
def huawei_time(second: int, sep: str = " ") -> str:
    # many calls share seconds; strftime was the generator's largest single cost
    return datetime.fromtimestamp(second, UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def number(rng: random.Random, prefix: str = "+86138") -> str:
    return prefix + "".join(rng.choices("0123456789", k=8))


def _talk(rng: random.Random, options: CallOptions, long_calls: bool = True) -> tuple[str, int]:
    roll = rng.random()
    if roll < options.short_share:
        return "short", rng.randint(0, 2)
    if long_calls and roll < options.short_share + options.long_share:
        return "long", rng.randint(600, 3600)
    return "answered", rng.randint(5, 300)


class Scene:
    """One call being built: its clock, status events and CDR fields (in a fixed key order)."""

    def __init__(self, rng: random.Random, options: CallOptions, start: float, session_id: str,
                 user_data: str | None, fee: dict[str, Any], double_space: bool) -> None:
        self.rng = rng
        self.options = options
        self.start = start
        self.sep = "  " if double_space else " "
        self.session_id = session_id
        self.user_data = user_data
        self.fee = fee
        self.events: list[StatusEvent] = []
        self.recording: Recording | None = None
        self.no_recording: str | None = None

    def text(self, offset: int) -> str:
        return huawei_time(math.floor(self.start) + offset, self.sep)

    def event(self, offset: int, event_type: str, **fields: Any) -> None:
        info: dict[str, Any] = {"sessionId": self.session_id, "timestamp": self.text(offset)}
        info.update(fields)
        if self.user_data is not None:
            info["userData"] = self.user_data
        self.events.append(StatusEvent(self.start + offset, {"eventType": event_type, "statusInfo": info}))

    def absent(self, *names: str) -> None:
        """Fields of things that did not happen: left out, or ``""`` with ``empty_times``."""
        if self.options.empty_times:
            for name in names:
                self.fee[name] = ""

    def disconnect(self, offset: int, caller: str, called: str, failure: Failure | None) -> None:
        code, desc = (0, RELEASED) if failure is None else (failure.state_code, failure.state_desc)
        self.event(offset, "disconnect", caller=caller, called=called, stateCode=code, stateDesc=desc)

    def fail_leg(self, offset: int, caller: str, called: str, failure: Failure,
                 silent: bool = False) -> tuple[int | None, int]:
        """Callout (already sent) → [alerting] → failure; returns (alerting offset, end offset)."""
        alerting = None
        if failure.rings:
            alerting = offset + self.rng.randint(1, 4)
            if not silent:
                self.event(alerting, "alerting", caller=caller, called=called)
        end = (alerting if alerting is not None else offset) + self.rng.randint(*failure.seconds)
        return alerting, end

    def failed_first_leg(self, alerting: int | None, end: int, failure: Failure) -> None:
        """CDR fields of a call whose first leg (A, or the callee) never answered."""
        fee = self.fee
        fee["callEndTime"] = self.text(end)
        self.failure_fields(end, failure)
        fee["callOutStartTime"] = self.text(0)
        if alerting is not None:
            fee["callOutAlertingTime"] = self.text(alerting)
        else:
            self.absent("callOutAlertingTime")
        self.absent("callOutAnswerTime")
        fee["callOutUnaswRsn"] = failure.q850
        fee["recordFlag"] = 0

    def failure_fields(self, end: int, failure: Failure) -> None:
        self.fee["failTime"] = self.text(end)
        self.fee["ulFailReason"] = failure.ul_fail_reason
        self.fee["sipStatusCode"] = failure.sip_status

    # -- scenarios ---------------------------------------------------------------------------------------

    def single_leg(self, scenario: str, display: str) -> tuple[str, int]:
        """Voice notification / verification code: the platform calls the callee, plays, hangs up."""
        rng, options, fee = self.rng, self.options, self.fee
        callee = number(rng)
        fee["callerNum"] = display  # the displayNbr the SP set
        fee["calleeNum"] = callee
        self.event(0, "callout", caller=display, called=callee)
        failure: Failure | None = None
        if rng.random() < options.platform_failure_share:
            failure = rng.choice(failures.PLATFORM_FAILURES)
        elif rng.random() >= options.answer_share:
            failure = failures.pick_callee_failure(rng)
        if failure is not None:
            alerting, end = self.fail_leg(0, display, callee, failure)
            self.disconnect(end, display, callee, failure)
            self.failed_first_leg(alerting, end, failure)
            fee["ttsPlayTimes"] = 0
            fee["ttsTransDuration"] = 0
            return failure.kind, end
        alerting = rng.randint(1, 5)
        answer = alerting + rng.randint(2, 12)
        self.event(alerting, "alerting", caller=display, called=callee)
        self.event(answer, "answer", caller=display, called=callee)
        outcome, talk = _talk(rng, options, long_calls=False)  # a played message does not last 10 minutes
        ul_fail_reason = 0
        collects = scenario == "notify" and rng.random() < options.collect_share
        if outcome == "answered" and scenario == "verify":
            talk = rng.randint(10, 45)  # the code is read out a few times
        if collects and outcome != "short":
            if rng.random() < 0.8:
                pressed = rng.randint(3, max(3, min(talk, 40)))
                self.event(answer + pressed, "collectInfo", digitInfo=rng.choice(("1", "2", "0", "9", "12")))
            else:
                ul_fail_reason = 100  # 放音收号时系统接收到的号码为空
        end = answer + talk
        self.disconnect(end, display, callee, None)
        fee["callEndTime"] = self.text(end)
        fee["ulFailReason"] = ul_fail_reason
        fee["sipStatusCode"] = 0
        fee["callOutStartTime"] = self.text(0)
        fee["callOutAlertingTime"] = self.text(alerting)
        fee["callOutAnswerTime"] = self.text(answer)
        fee["callOutUnaswRsn"] = 0
        fee["recordFlag"] = 0
        fee["ttsPlayTimes"] = rng.randint(1, 3)
        fee["ttsTransDuration"] = rng.randint(0, 2)
        return outcome, end

    def callback(self, display_a: str, display_b: str) -> tuple[str, int]:
        """Voice callback: the platform calls A (callOut*), then B (fwd*); B's talk time decides the recording."""
        rng, options, fee = self.rng, self.options, self.fee
        a_number, b_number = number(rng), number(rng)
        wants_recording = rng.random() < options.record_share
        self.no_recording = UNANSWERED if wants_recording else NOT_ASKED
        per_leg = options.per_leg_status
        fee["callerNum"] = display_a  # the first leg's display number
        fee["calleeNum"] = a_number  # the first leg calls A
        self.event(0, "callout", caller=display_a, called=a_number)
        failure: Failure | None = None
        if rng.random() < options.platform_failure_share:
            failure = rng.choice(failures.PLATFORM_FAILURES)
        elif rng.random() >= 0.9:
            failure = failures.pick_caller_failure(rng)
        if failure is not None:
            alerting, end = self.fail_leg(0, display_a, a_number, failure)
            self.disconnect(end, display_a, a_number, failure)
            self.failed_first_leg(alerting, end, failure)
            return failure.kind, end
        a_alerting = rng.randint(1, 4)
        a_answer = a_alerting + rng.randint(2, 10)
        self.event(a_alerting, "alerting", caller=display_a, called=a_number)
        self.event(a_answer, "answer", caller=display_a, called=a_number)
        fwd_start = a_answer + rng.randint(0, 2)
        fee["fwdDisplayNum"] = display_b
        fee["fwdDstNum"] = b_number
        fee["fwdStartTime"] = self.text(fwd_start)
        fee["callOutStartTime"] = self.text(0)
        fee["callOutAlertingTime"] = self.text(a_alerting)
        fee["callOutAnswerTime"] = self.text(a_answer)
        fee["callOutUnaswRsn"] = 0
        if per_leg:
            self.event(fwd_start, "callout", caller=display_b, called=b_number)
        b_failure = failures.pick_callee_failure(rng) if rng.random() >= options.answer_share else None
        if b_failure is not None:
            b_alerting, end = self.fail_leg(fwd_start, display_b, b_number, b_failure, silent=not per_leg)
            self.disconnect(end, display_a, a_number, b_failure)
            if b_alerting is not None:
                fee["fwdAlertingTime"] = self.text(b_alerting)
            else:
                self.absent("fwdAlertingTime")
            self.absent("fwdAnswerTime")
            fee["callEndTime"] = self.text(end)
            fee["fwdUnaswRsn"] = b_failure.q850
            self.failure_fields(end, b_failure)
            fee["recordFlag"] = 0
            return b_failure.kind, end
        b_alerting = fwd_start + rng.randint(1, 4)
        b_answer = b_alerting + rng.randint(2, 15)
        if per_leg:
            self.event(b_alerting, "alerting", caller=display_b, called=b_number)
            self.event(b_answer, "answer", caller=display_b, called=b_number)
        outcome, talk = _talk(rng, options)
        end = b_answer + talk
        self.disconnect(end, display_a, a_number, None)
        fee["fwdAlertingTime"] = self.text(b_alerting)
        fee["fwdAnswerTime"] = self.text(b_answer)
        fee["callEndTime"] = self.text(end)
        fee["fwdUnaswRsn"] = 0
        fee["ulFailReason"] = 0
        fee["sipStatusCode"] = 0
        missing = rng.random() < options.missing_share
        url_only = rng.random() < options.url_only_share
        if not wants_recording:
            fee["recordFlag"] = 0
        elif talk < 3:  # the platform makes no recording of calls under 3 s
            fee["recordFlag"] = 0
            self.no_recording = UNDER_3S
        else:
            self._recorded(talk, b_answer, missing, url_only)
        return outcome, end

    def _recorded(self, talk: int, b_answer: int, missing: bool, url_only: bool) -> None:
        options, fee = self.options, self.fee
        size = WAV_HEADER_BYTES + talk * WAV_BYTES_PER_SECOND
        if options.recording_max_bytes:
            size = min(size, max(options.recording_max_bytes, WAV_HEADER_BYTES))
        name = f"{session_id_stem(self.session_id)}.wav"
        self.recording = Recording(name, None if url_only else options.recording_domain, size, missing)
        self.no_recording = None
        fee["recordFlag"] = 1
        fee["recordStartTime"] = self.text(b_answer)
        if url_only:
            self.absent("recordObjectName", "recordBucketName", "recordDomain")
            fee["recordFileDownloadUrl"] = options.recording_url_base + quote(name)
        else:
            fee["recordObjectName"] = name
            fee["recordBucketName"] = options.recording_bucket
            fee["recordDomain"] = options.recording_domain
