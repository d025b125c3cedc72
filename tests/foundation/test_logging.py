"""structlog setup: JSON lines when stderr is not a terminal, readable text on a terminal, secrets never printed
(top-level keys, nested dicts, and the standard library's loggers such as aiokafka's); the lifecycle's clean exit."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import orjson
import pytest

SECRET = "S3cr3t-value-never-printed"

LOGGING_SCRIPT = f"""
import logging, sys
from voicecall.runtime import logging as vlog
vlog.setup("INFO", sys.argv[1])
log = vlog.get("test")
log.info("configured", app_secret="{SECRET}", kafka_sasl_password="{SECRET}", ingress_path_token="{SECRET}",
         headers={{"Authorization": "{SECRET}", "X-AKSK": "{SECRET}", "Host": "visible-host"}},
         settings={{"huawei_app_secret": "{SECRET}", "nested": [{{"password": "{SECRET}"}}]}}, port=8080)
logging.getLogger("aiokafka.conn").warning("stdlib record with %s", "an argument")
"""


def run_logging(fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LOGGING_SCRIPT, fmt], capture_output=True, text=True, timeout=60)


def test_json_lines_when_not_a_tty_and_no_secrets() -> None:
    result = run_logging("auto")  # stderr is a pipe here: JSON
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "configured" and first["level"] == "info" and first["port"] == 8080
    assert first["timestamp"].endswith("Z")
    assert first["headers"]["Host"] == "visible-host"
    assert first["app_secret"] == first["headers"]["X-AKSK"] == first["settings"]["huawei_app_secret"] == "***"
    assert first["settings"]["nested"] == [{"password": "***"}]
    assert second["event"] == "stdlib record with an argument" and second["logger"] == "aiokafka.conn"
    assert SECRET not in result.stderr


def test_readable_text_on_a_tty_and_no_secrets() -> None:
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", LOGGING_SCRIPT, "auto"], stderr=slave,
                                   stdout=subprocess.DEVNULL)
        os.close(slave)
        output = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=30) == 0
    finally:
        os.close(master)
    text = output.decode(errors="replace")
    assert "configured" in text and "stdlib record with an argument" in text
    assert not text.lstrip().startswith("{")  # not JSON on a terminal
    assert SECRET not in text


@pytest.mark.parametrize("variable", ["VOICECALL_KAFKA_SASL_PASSWORD", "VOICECALL_HUAWEI_APP_SECRET"])
def test_a_bad_secret_value_is_named_but_not_printed(variable: str) -> None:
    # a settings class on which both secrets fail validation: the message names the variable, never the value
    script = """
from pydantic import Field
from voicecall.runtime import config
class S(config.CommonSettings):
    kafka_sasl_password: str | None = Field(None, min_length=64)
    huawei_app_secret: str = Field("x", min_length=64)
config.load(S)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, variable: SECRET})
    assert result.returncode == 2
    assert variable in result.stderr
    assert SECRET not in result.stderr


def test_lifecycle_sigterm_drains_and_exits_0() -> None:
    script = """
import asyncio, sys
from voicecall.runtime import lifecycle, logging as vlog
vlog.setup("INFO", "json")
async def service(stop):
    print("ready", flush=True)
    await stop.wait()
    await asyncio.sleep(0.3)  # draining
    print("drained", flush=True)
sys.exit(lifecycle.run(service))
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip() == "drained"
    assert '"stopped cleanly"' in err
