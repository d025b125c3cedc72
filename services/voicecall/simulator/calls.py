"""Deterministic call generator: the calls a Huawei Voice Call app would make, with their status events and CDR.

Pure: ``generate(options)`` yields :class:`Call` objects from ``random.Random(seed)`` and a fixed base time, so the
same options give the same calls, byte for byte. The scenarios' timelines are in :mod:`.scenarios`; what a call is,
in :mod:`.model`. Calls are spread over the apps of ``options.app_keys`` in turn; each app has its own number
(``bindNum``, shown to both parties).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from voicecall.simulator.model import (
    FILES_PATH,
    NOT_CALLBACK,
    SERVICE_TYPE,
    WAV_HEADER_BYTES,
    Call,
    CallOptions,
    normalise_mix,
    parse_mix,
    session_id_stem,
)
from voicecall.simulator.scenarios import Scene

__all__ = ["FILES_PATH", "WAV_HEADER_BYTES", "Call", "CallOptions", "Generator", "generate", "normalise_mix",
           "parse_mix", "session_id_stem"]

_PREFIX = {"callback": 1200, "notify": 1201, "verify": 1202}


class Generator:
    """Iterates calls of one run. Holds the only ``random.Random``; draws happen in a fixed order per call."""

    def __init__(self, options: CallOptions) -> None:
        if options.rate <= 0:
            raise ValueError("rate must be positive")
        if not options.app_keys:
            raise ValueError("at least one app key is needed")
        self.options = options
        self.mix = normalise_mix(options.mix)
        self.rng = random.Random(options.seed)
        self.base = options.start.timestamp()
        self.run_tag = self.rng.getrandbits(32)
        self.bind_nums = ["+8675528" + "".join(self.rng.choices("0123456789", k=4)) + "02"
                          for _ in options.app_keys]
        self.host = f"callenabler{self.rng.choice((245, 246))}.huaweicaas.com"

    def calls(self, count: int | None = None, duration: float | None = None) -> Iterator[Call]:
        """``count`` calls, or the calls starting within ``duration`` simulated seconds, or forever."""
        index = 0
        while count is None or index < count:
            offset = index / self.options.rate
            if duration is not None and duration > 0 and offset >= duration:
                return
            yield self.call(index)
            index += 1

    def call(self, index: int) -> Call:
        rng, options = self.rng, self.options
        start = self.base + index / options.rate
        app = index % len(options.app_keys)
        app_key, bind_num = options.app_keys[app], self.bind_nums[app]
        scenario = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        double = options.double_space_share > 0 and rng.random() < options.double_space_share
        stamp = datetime.fromtimestamp(math.floor(start), UTC).strftime("%Y%m%d%H%M%S")
        session_id = f"{_PREFIX[scenario]}_{index}_{self.run_tag}_{stamp}@{self.host}"
        icid = f"{rng.getrandbits(128):032x}.{rng.randrange(10**10)}.{rng.randrange(10**7)}.{index}"
        user_data = f"sim-{rng.getrandbits(40):010x}" if rng.random() < 0.7 else None
        fee: dict[str, Any] = {
            "direction": 0,
            "spId": options.sp_id,
            "appKey": app_key,
            "icid": icid,
            "bindNum": bind_num,
            "sessionId": session_id,
        }
        scene = Scene(rng, options, start, session_id, user_data, fee, double)
        if scenario == "callback":
            outcome, end = scene.callback(bind_num, bind_num)
        else:
            outcome, end = scene.single_leg(scenario, bind_num)
            scene.no_recording = NOT_CALLBACK
        fee["serviceType"] = SERVICE_TYPE[scenario]
        fee["hostName"] = self.host
        if user_data is not None:
            fee["userData"] = user_data
        return Call(index, scenario, outcome, session_id, app_key, start, start + end, tuple(scene.events), fee,
                    scene.recording, scene.no_recording)


def generate(options: CallOptions, count: int | None = None, duration: float | None = None) -> Iterator[Call]:
    return Generator(options).calls(count, duration)
