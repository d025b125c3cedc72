"""`voicecall tail` while its broker goes away: it says "broker unreachable, retrying" once (then at most once a
minute), keeps its --timeout, and exits 0 without a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from kafka_helpers import produce
from voicecall import topics
from voicecall.devenv.broker import start_broker
from voicecall.runtime import config


def test_tail_says_once_that_the_broker_is_gone_and_keeps_its_timeout(tmp_path: Path) -> None:
    handle = start_broker("noida", state_dir=tmp_path / "broker")
    try:
        settings = config.load(topics.TopicSettings, kafka_bootstrap=handle.bootstrap, topic_partitions=1,
                               topic_replication=1, topic_min_insync=1)
        asyncio.run(topics.create(settings))
        asyncio.run(produce(settings, "billing", [(b"k", b'{"n": 1}', [])]))
        env = {key: value for key, value in os.environ.items() if not key.startswith("VOICECALL_")}
        env.update(VOICECALL_KAFKA_BOOTSTRAP=handle.bootstrap, VOICECALL_LOG_FORMAT="json")
        process = subprocess.Popen([sys.executable, "-m", "voicecall", "tail", "billing", "--from-beginning",
                                    "--timeout", "15"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        assert process.stdout is not None and '"n":1' in process.stdout.readline()  # tail is in its loop now
        handle.stop()
        gone = time.monotonic()
        _, err = process.communicate(timeout=60)
        took = time.monotonic() - gone
    finally:
        handle.stop()
    assert process.returncode == 0, err
    assert took < 15 + 10, took  # --timeout counts from the last record (none came), outage or not
    notices = [orjson.loads(line) for line in err.splitlines() if "broker unreachable, retrying" in line]
    assert len(notices) == 1, err  # one line per broker per state change, not one per retry
    assert notices[0]["level"] == "warning" and notices[0]["broker"] == "1", notices
    assert "Traceback" not in err and "Task was destroyed" not in err, err
