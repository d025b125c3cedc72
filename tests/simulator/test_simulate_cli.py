"""``voicecall simulate`` as a process: summary, exit status by loss, recording API served, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
from simulator_support import Receiver, always
from test_signing import verify

from voicecall import huawei
from voicecall.devenv.ports import free_port
from voicecall.simulator.recording_api import PATH


async def simulate(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``voicecall simulate`` with this environment minus the apps settings, plus ``env``."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("VOICECALL_HUAWEI_", "VOICECALL_CALLS_"))}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "simulate", *args, env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_cli_run_prints_summary_and_exits_0(receiver: Receiver) -> None:
    process = await simulate("--status-url", receiver.status_url, "--fee-url", receiver.fee_url, "--calls", "40",
                             "--rate", "20", "--seed", "5", "--speed", "0", "--start-time", "2026-03-01T08:00:00Z",
                             "--mix", "callback=0.5,notify=0.5", "--json")
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    summary = orjson.loads(out.splitlines()[-1])
    assert summary["calls"] == 40 and summary["seed"] == 5 and summary["lost"] == 0
    assert summary["start_time"] == "2026-03-01T08:00:00Z"
    assert set(summary["scenarios"]) == {"callback", "notify"}
    assert summary["status_pushes"] == len(receiver.on("/notify/status"))
    assert summary["fee_records_delivered"] == 40
    assert summary["unfinished"] == 0 and summary["stopped"] is False
    assert b"seed 5" in err


async def test_cli_exits_4_when_the_receiver_lost_data(receiver: Receiver) -> None:
    receiver.rule = always(500)
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--calls", "3", "--speed", "0",
                             "--repush-interval", "10ms", "--max-repushes", "2", "--seed", "1")
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 4, err.decode()
    text = out.decode()
    assert "receiver lost" in text and "given up after 2 re-pushes 3," in text  # the policy in force
    fee = [push for push in receiver.pushes if push.json["eventType"] == "fee"]
    assert len(fee) == 3 * len({push.body for push in fee})  # first push + 2 re-pushes each


async def test_cli_serves_recordings_until_sigterm_and_exits_0(receiver: Receiver) -> None:
    port = free_port()
    process = await simulate("--status-url", receiver.status_url, "--fee-url", receiver.fee_url,
                             "--rate", "1", "--speed", "0", "--seed", "3", "--mix", "callback=1",
                             "--record-share", "1", "--url-only-share", "0", "--serve-recordings", f"127.0.0.1:{port}",
                             "--app-key", "cli-key", "--app-secret", "cli-secret", "--concurrency", "8")
    try:
        records: list[dict] = []  # type: ignore[type-arg]
        scanned = 0
        for _ in range(200):
            fresh, scanned = receiver.pushes[scanned:], len(receiver.pushes)
            records = [r for push in fresh if push.path == "/notify/fee" for r in push.json["feeLst"]
                       if r.get("recordFlag") == 1]
            if records:
                break
            await asyncio.sleep(0.05)
        assert records, "no recorded CDR arrived"
        record = records[0]
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}{PATH}", allow_redirects=False,
                params={"fileName": record["recordObjectName"], "recordDomain": record["recordDomain"]},
                headers=huawei.auth_headers("cli-key", "cli-secret")) as answer:
            assert answer.status == 301
            assert answer.headers["Location"].startswith(f"http://127.0.0.1:{port}/files/")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert "(stopped)" in out.decode()


async def test_cli_rejects_missing_targets() -> None:
    process = await simulate("--calls", "1")
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"--status-url" in err


async def test_cli_stopped_by_sigterm_exits_0_and_still_reports_losses(receiver: Receiver) -> None:
    receiver.rule = always(500)
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--rate", "5", "--speed", "0",
                             "--seed", "2", "--json", "--concurrency", "4")
    try:
        for _ in range(200):
            if len(receiver.pushes) >= 20:
                break
            await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    summary = orjson.loads(out.splitlines()[-1])
    assert summary["stopped"] is True
    assert summary["status_lost"] >= 1 and summary["lost"] == summary["status_lost"] + summary["fee_records_given_up"]


async def test_cli_prints_progress_lines_while_running(receiver: Receiver) -> None:
    # 20x real time: the calls (up to a minute long each) play out over a few wall seconds, progress every 0.2 s
    process = await simulate("--status-url", receiver.status_url, "--fee-url", receiver.fee_url, "--calls", "12",
                             "--rate", "1", "--seed", "4", "--mix", "verify=1", "--speed", "20",
                             "--progress-interval", "0.2")
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    progress = [line for line in err.decode().splitlines() if "calls " in line and "re-pushes" in line]
    assert len(progress) >= 3, err.decode()
    delivered = [int(line.split("status ", 1)[1].split("/")[0]) for line in progress]
    assert delivered == sorted(delivered)
    assert delivered[0] < len(receiver.on("/notify/status"))  # a running count, not only the end state
    assert "lost" in progress[0] and "given up" in progress[0]
    text = out.decode()  # the summary: calls, pushes, re-pushes, answers by status code, what was lost
    assert "calls            12 (verify: 12)" in text
    assert "answers 200:" in text and "re-pushes 0" in text and "receiver lost    0" in text


FAST = ("--speed", "0", "--seed", "9", "--start-time", "2026-03-01T08:00:00Z")


async def test_cli_signs_with_the_apps_file_and_the_single_app(receiver: Receiver, tmp_path: Path) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text('{"app-a": "secret-a", "app-b": ["secret-b1", "secret-b2"]}')
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--calls", "30", "--json",
                             "--push-signature", "concat", *FAST,  # the old name of --push-digest
                             env={"VOICECALL_HUAWEI_APPS_FILE": str(apps), "VOICECALL_HUAWEI_APP_KEY": "single",
                                  "VOICECALL_HUAWEI_APP_SECRET": "secret-s"})
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    summary = orjson.loads(out.splitlines()[-1])
    assert summary["apps"] == {"app-a": 10, "app-b": 10, "single": 10}
    assert summary["signatures"] == {"valid": len(receiver.pushes)} and summary["signing"].startswith("concat")
    secrets = {"app-a": ("secret-a",), "app-b": ("secret-b1",), "single": ("secret-s",)}
    for push in receiver.pushes:
        app = huawei.parse_x_aksk(push.headers["X-AKSK"])["Username"]
        assert verify(push.headers["X-AKSK"], receiver.base_url + "/notify", secrets[app], ("concat",))
    assert b"secret" not in err and b"secret" not in out  # secrets are never printed
    assert b"apps app-a, app-b, single" in err


async def test_cli_signs_only_when_it_has_a_secret_unless_told(receiver: Receiver) -> None:
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--calls", "3", "--json", *FAST)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert receiver.pushes and not any("X-AKSK" in push.headers for push in receiver.pushes)
    assert orjson.loads(out.splitlines()[-1])["signing"] == "off"
    receiver.pushes.clear()
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--calls", "3", "--sign-pushes",
                             "--push-created", "beijing", *FAST)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert {huawei.parse_x_aksk(push.headers["X-AKSK"])["Username"] for push in receiver.pushes} == {"sim-app-key"}
    receiver.pushes.clear()
    process = await simulate("--notify-url", receiver.base_url + "/notify", "--calls", "3", "--no-sign-pushes",
                             *FAST, env={"VOICECALL_HUAWEI_APP_SECRET": "s"})
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert receiver.pushes and not any("X-AKSK" in push.headers for push in receiver.pushes)


async def test_cli_refuses_a_broken_apps_file_and_shares_over_1(tmp_path: Path) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text('{"app-a": ["hush-1", "hush-2", "hush-3"]}')
    process = await simulate("--notify-url", "http://127.0.0.1:1/notify", "--calls", "1", "--apps-file", str(apps))
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert str(apps).encode() in err and b"one or two" in err and b"hush" not in err
    process = await simulate("--notify-url", "http://127.0.0.1:1/notify", "--calls", "1",
                             "--bad-signature-share", "0.6", "--unsigned-share", "0.6")
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and b"add up to more than 1" in err


async def test_cli_lost_cdrs_forecast_missing_calls_with_the_grace(receiver: Receiver) -> None:
    process = await simulate("--status-url", receiver.status_url, "--fee-url", receiver.fee_url, "--calls", "60",
                             "--rate", "20", "--lost-cdr-share", "0.3", "--out-of-order-share", "0.2",
                             "--duplicate-share", "0.1", *FAST, env={"VOICECALL_CALLS_CDR_GRACE": "5m"})
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()  # CDRs withheld on purpose are not losses
    text = out.decode()
    with_cdr = {record["sessionId"] for push in receiver.on("/notify/fee") for record in push.json["feeLst"]}
    ended = {push.json["statusInfo"]["sessionId"] for push in receiver.on("/notify/status")
             if push.json["eventType"] == "disconnect"}
    missing = len(ended - with_cdr)
    assert missing > 5
    assert f"cdr missing      {missing} calls should end missing (disconnect accepted, no CDR: withheld: " \
           f"{missing})" in text
    assert "grace 5m" in text and f"withheld on purpose {missing}" in text
    assert "late " in text and "duplicated " in text and "receiver lost    0" in text
    process = await simulate("--status-url", receiver.status_url, "--fee-url", receiver.fee_url, "--calls", "20",
                             "--lost-cdr-share", "1", "--cdr-grace", "90s", "--json", *FAST,
                             env={"VOICECALL_CALLS_CDR_GRACE": "5m"})  # the flag wins
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    expected = orjson.loads(out.splitlines()[-1])["missing_expected"]
    assert expected["calls"] == 20 and expected["cdr_grace"] == 90 and expected["why"] == {"withheld": 20}
