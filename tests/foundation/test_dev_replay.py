"""docs/operations.md's replay procedure under `voicecall dev`, run as written (the shell block after the
``replay-under-dev`` marker) against a running `voicecall dev`: billing is stopped and left stopped, its group is
reset to T, it is started again and re-emits exactly the billing records of the window, byte for byte."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from test_dev import CONSUMERS, SERVICES, alive, child_pids, free_port, free_port_run, read_until_running

from kafka_helpers import new_prefix, produce, read_all
from voicecall.runtime import config, times

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_procedure() -> str:
    text = DOCS.read_text()
    marker = text.index("<!-- replay-under-dev:")
    block = re.search(r"```sh\n(.*?)```", text[marker:], re.S)
    assert block is not None, "no sh block after the replay-under-dev marker"
    return block.group(1)


def cdr(n: int, end: str) -> dict[str, Any]:
    return {"direction": 0, "spId": "sp", "appKey": "ak", "icid": f"icid.{n}", "bindNum": "+8675566660000",
            "sessionId": f"replay-{n}@callenabler.home1.com", "callerNum": "+8675566660000",
            "calleeNum": "+8675588880000", "callOutStartTime": "2026-11-23 09:58:00",
            "callOutAlertingTime": "2026-11-23 09:58:05", "callOutAnswerTime": "2026-11-23 09:58:09",
            "callOutUnaswRsn": 0, "callEndTime": end, "ulFailReason": 0, "sipStatusCode": 0, "recordFlag": 0,
            "serviceType": "001", "hostName": "callenabler245.huaweicaas.com"}


def fees(numbers: range) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    docs = [cdr(n, f"2026-11-23 10:{n:02d}:00") for n in numbers]
    return [(doc["sessionId"].encode(), orjson.dumps(doc), []) for doc in docs]


def billed(records: list[Any]) -> set[tuple[bytes, bytes]]:
    return {(r.key, r.value) for r in records}


async def test_the_documented_replay_procedure_works_under_voicecall_dev(kafka_bootstrap: str,
                                                                         tmp_path: Path) -> None:
    prefix = new_prefix()
    metrics_base = free_port_run(len(CONSUMERS))
    env = {**os.environ, "VOICECALL_TOPIC_PREFIX": prefix, "VOICECALL_INGRESS_PORT": str(free_port()),
           "VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_LOG_FORMAT": "json",
           "VOICECALL_METRICS_PORT": str(metrics_base)}
    # In its own directory with the default state dir (.state), as the procedure assumes.
    dev = subprocess.Popen(  # noqa: ASYNC220 - read line by line in a thread, like test_dev's helpers do
        [sys.executable, "-m", "voicecall", "dev", "--broker", "external", "--bootstrap", kafka_bootstrap,
         "--partitions", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = await asyncio.to_thread(read_until_running, dev)
        assert set(child_pids(banner)) == set(SERVICES), banner
        assert "kill -USR1 $(cat .state/pids/dev.pid)" in banner, banner
        events = re.search(r"events:\s+(.*) \S+/voicecall tail billing", banner)
        assert events is not None, banner
        named = dict(item.split("=", 1) for item in events.group(1).split())  # what the banner says to set
        assert named == {"VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap, "VOICECALL_TOPIC_PREFIX": prefix}
        settings = config.load(config.CommonSettings, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)

        await produce(settings, "fee.raw", fees(range(0, 5)))
        before = await read_all(settings, "billing", expect=5, idle=0.5, timeout=240)
        await asyncio.sleep(1.5)
        since = times.iso_ms(int(time.time() * 1000))  # T: after the first five were billed
        await asyncio.sleep(0.5)
        await produce(settings, "fee.raw", fees(range(5, 10)))
        everything = await read_all(settings, "billing", expect=10, idle=0.5, timeout=240)
        assert len(before) == 5 and len(everything) == 10
        window = billed(everything) - billed(before)
        assert len(window) == 5

        old_billing = int((tmp_path / ".state" / "pids" / "billing.pid").read_text())
        procedure = await asyncio.to_thread(
            subprocess.run, ["bash", "-euc", documented_procedure()], cwd=tmp_path, capture_output=True, text=True,
            timeout=240, env={**os.environ, **named, "T": since,
                              "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
        assert procedure.returncode == 0, procedure.stdout + procedure.stderr
        assert procedure.stdout.count("total to reprocess: 5 records") == 2, procedure.stdout  # dry run, then real
        assert "committed new offsets for group" in procedure.stdout

        again = await read_all(settings, "billing", expect=15, idle=1.0, timeout=240)
        assert len(again) == 15
        reemitted = [r for r in again if (r.key, r.value) in window]
        assert len(reemitted) == 10  # each record of the window twice: the original and its byte-identical repeat
        assert billed(again) == billed(everything)  # nothing else, nothing different
        new_billing = int((tmp_path / ".state" / "pids" / "billing.pid").read_text())
        assert new_billing != old_billing and alive(new_billing) and not alive(old_billing)
    finally:
        dev.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(dev.wait, 90)
    rest = dev.stdout.read() if dev.stdout else ""
    assert code == 0, rest
    assert "voicecall dev: billing stopped (exit 0, not by voicecall dev): left stopped" in rest, rest
    assert "dev stopped" in rest and "not cleanly" not in rest, rest
    for service in SERVICES:
        assert f"{service:<11} exited 0" in rest, rest
    assert not list((tmp_path / ".state" / "pids").iterdir())  # nothing left to signal by mistake
    log = (tmp_path / ".state" / "logs" / "billing.log").read_text()
    assert "second signal" not in log and log.count("stopped cleanly") == 2
