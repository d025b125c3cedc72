"""`voicecall tail`: prints what was produced as JSON lines; key filter, headers, --since, stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import orjson
from replay_helpers import Area, fee_headers, fee_value

from voicecall.replay import tail
from voicecall.runtime import times


def test_render_json_text_and_binary_values() -> None:
    record = SimpleNamespace(topic="t", partition=1, offset=5, timestamp=0, key=b"k",
                             value=b'{"a": 1}', headers=[("ce_id", b"x")])
    assert tail.render(record, with_headers=True) == {
        "topic": "t", "partition": 1, "offset": 5, "timestamp": "1970-01-01T00:00:00.000Z", "key": "k",
        "value": {"a": 1}, "headers": {"ce_id": "x"}}
    record.value = b"not json"
    assert tail.render(record, False)["value_encoding"] == "text"
    record.value = b"\xff\xfe"
    assert tail.render(record, False) | {"value": "//4="} == tail.render(record, False)
    assert tail.render(record, False)["value_encoding"] == "base64"


async def run_tail(area: Area, *argv: str, timeout: float = 60) -> tuple[int, list[dict[str, Any]], str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "tail", *argv, env=area.env(),
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, [orjson.loads(line) for line in out.splitlines()], err.decode()


async def test_tail_prints_what_was_produced(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 60) * 1000
    for n in range(5):
        sid = "a" if n % 2 else "b"
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                     timestamp_ms=base + n * 1000, headers=fee_headers(sid, ce_id=f"id{n}"))

    code, lines, err = await run_tail(area, "fee.unique", "--from-beginning", "--max", "5", "--headers")
    assert code == 0, err
    assert sorted(line["value"]["n"] for line in lines) == [0, 1, 2, 3, 4]
    assert all(line["topic"] == area.topic("fee.unique") for line in lines)
    assert {line["headers"]["ce_id"] for line in lines} == {f"id{n}" for n in range(5)}
    assert {line["headers"]["ce_type"] for line in lines} == {"com.huaweicloud.voicecall.fee"}

    code, lines, err = await run_tail(area, area.topic("fee.unique"), "--since", times.iso_ms(base + 2000),
                                      "--key", "a", "--timeout", "3")
    assert code == 0, err
    assert [line["value"]["n"] for line in lines] == [3]
    assert "headers" not in lines[0]


async def test_tail_follows_and_stops_on_sigterm(area: Area, producer: Any) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "tail", "billing",
                                                env=area.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = b""
        deadline = time.monotonic() + 30
        # The tail starts at the end: keep producing until it has joined and prints one.
        while not line and time.monotonic() < deadline:
            await producer.send_and_wait(area.topic("billing"), b'{"sessionId": "x"}', key=b"x")
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 1.0)
            except TimeoutError:
                continue
        assert orjson.loads(line)["value"] == {"sessionId": "x"}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_tail_unknown_topic_says_which_exist(area: Area) -> None:
    code, lines, err = await run_tail(area, "bilig", "--timeout", "1")
    assert code == 2 and not lines
    assert area.topic("billing") in err
