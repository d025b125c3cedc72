"""How calls fail: the hang-up causes (stateCode, 通话挂机原因值), Q850 causes, 拆线点 (ulFailReason) and SIP
statuses the platform reports, grouped by the side that failed."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One way a leg fails: hang-up cause (stateCode), Q850 cause, 拆线点 (ulFailReason), SIP status."""

    kind: str
    state_code: int
    state_desc: str
    q850: int
    ul_fail_reason: int
    sip_status: int
    rings: bool  # whether an ``alerting`` event comes before the failure
    seconds: tuple[int, int]  # how long after callout (or alerting, when it rings) the leg ends


# Callee-side failures (notification, verification code, and leg B of a callback): codes 81xx "被叫…".
CALLEE_FAILURES = (
    Failure("no-answer", 8101, "The called party does not answer.", 19, 514, 480, True, (30, 60)),
    Failure("busy", 8102, "The called party is busy.", 17, 518, 486, False, (1, 4)),
    Failure("unreachable", 8103, "The called party is temporarily unreachable.", 20, 518, 480, False, (2, 8)),
    Failure("powered-off", 8104, "The called party is powered off.", 20, 518, 480, False, (1, 5)),
    Failure("suspended", 8105, "The called party's service is suspended.", 21, 518, 403, False, (1, 3)),
    Failure("not-exist", 8100, "The called number does not exist.", 1, 518, 404, False, (0, 2)),
    Failure("rejected", 8004, "The user hung up while ringing.", 21, 515, 603, True, (2, 15)),
    Failure("ring-timeout", 8003, "User ringing timed out.", 18, 514, 408, True, (45, 60)),
)
CALLEE_WEIGHTS = (30, 20, 12, 8, 3, 5, 15, 7)
# Caller-side failures (leg A of a callback): codes 81xx "主叫…".
CALLER_FAILURES = (
    Failure("caller-no-answer", 8107, "The calling party does not answer.", 19, 514, 480, True, (30, 60)),
    Failure("caller-busy", 8108, "The calling party is busy.", 17, 518, 486, False, (1, 4)),
    Failure("caller-unreachable", 8109, "The calling party is temporarily unreachable.", 20, 518, 480, False, (2, 8)),
    Failure("caller-powered-off", 8110, "The calling party is powered off.", 20, 518, 480, False, (1, 5)),
    Failure("caller-suspended", 8111, "The calling party's service is suspended.", 21, 518, 403, False, (1, 3)),
    Failure("caller-not-exist", 8106, "The calling number does not exist.", 1, 518, 404, False, (0, 2)),
)
CALLER_WEIGHTS = (35, 25, 15, 10, 5, 10)
# The platform refusing a call before anyone rings (rare).
PLATFORM_FAILURES = (
    Failure("voice-ports", 7109, "Insufficient voice ports.", 0, 0, 503, False, (0, 1)),
    Failure("app-rate-limited", 7002, "The app's call frequency is restricted.", 0, 0, 403, False, (0, 1)),
    Failure("internal-error", 8000, "Internal error.", 127, 517, 500, False, (0, 2)),
)


def pick_callee_failure(rng: random.Random) -> Failure:
    return rng.choices(CALLEE_FAILURES, weights=CALLEE_WEIGHTS)[0]


def pick_caller_failure(rng: random.Random) -> Failure:
    return rng.choices(CALLER_FAILURES, weights=CALLER_WEIGHTS)[0]
