"""Replay that cannot break a stage and leaves nothing behind: `replay copy` refuses internal topics (exit 2, one
line), every replay/tail path closes its Kafka clients (run with ResourceWarning as an error), and a real reset
prints exact record counts, as its dry run does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from replay_helpers import Area, fee_headers, fee_value

from kafka_helpers import read_to_end
from voicecall.replay import names
from voicecall.runtime import times
from voicecall.runtime.kafka import make_transactional_producer


async def voicecall(area: Area, *args: str, strict: bool = True) -> tuple[int, str, str]:
    """``voicecall ARGS`` in a subprocess on the area; ``strict``: a ResourceWarning (an unclosed client) is an
    error, which Python reports on stderr."""
    warnings = ["-W", "error::ResourceWarning"] if strict else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *warnings, "-m", "voicecall", *args, env=area.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def no_unclosed(err: str) -> None:
    for sign in ("Unclosed", "ResourceWarning", "Exception ignored", "Traceback"):
        assert sign not in err, err[-3000:]


def test_internal_topics_come_from_the_topic_table() -> None:
    assert names.internal("dedup.changelog", "voicecall.") is not None
    assert names.internal("voicecall.dedup.changelog", "voicecall.") is not None
    assert names.internal("other.dedup.changelog", "voicecall.") is not None  # another deployment's
    assert names.internal("voicecall.calls.changelog", "voicecall.") == "a stage's state"  # any *.changelog
    for name in ("fee.unique", "voicecall.billing", "billing", "deadletter", "calls", "changelogs"):
        assert names.internal(name, "voicecall.") is None, name
    with pytest.raises(names.InternalTopic, match=r"into voicecall\.dedup\.changelog"):
        names.check_copy("fee.unique", "voicecall.dedup.changelog", "voicecall.", from_internal=True)
    with pytest.raises(names.InternalTopic, match="--from-internal"):
        names.check_copy("dedup.changelog", "fee.raw", "voicecall.")
    names.check_copy("dedup.changelog", "fee.raw", "voicecall.", from_internal=True)


async def test_copy_refuses_an_internal_topic_as_target_and_as_source_unless_asked(area: Area, producer: Any
                                                                                    ) -> None:
    base = (int(time.time()) - 300) * 1000
    for n in range(3):
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(f"i{n}", n), key=f"i{n}".encode(),
                                     timestamp_ms=base + n, headers=fee_headers(f"i{n}"))
    for target in ("dedup.changelog", area.topic("dedup.changelog")):
        code, out, err = await voicecall(area, "replay", "copy", "--from-topic", "fee.unique", "--to-topic", target,
                                         "--from=-10m", "--to", "now")
        assert code == 2, err
        assert err.splitlines() == [f"voicecall replay copy: refusing to copy into {target}: it is internal "
                                    f"(dedup state: fingerprint and window time per call (compacted); only its "
                                    f"stage writes it)"], err
        assert out == ""
        # --from-internal is about the source: the target is refused whatever the flags
        code, _, err = await voicecall(area, "replay", "copy", "--from-topic", "fee.unique", "--to-topic", target,
                                       "--from=-10m", "--from-internal", "--dry-run")
        assert code == 2 and len(err.splitlines()) == 1 and "refusing to copy into" in err, err
    assert await read_to_end(area.settings, "dedup.changelog") == []

    code, _, err = await voicecall(area, "replay", "copy", "--from-topic", "dedup.changelog", "--to-topic",
                                   "fee.raw", "--from=-10m")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "refusing to copy from dedup.changelog" in err and "--from-internal" in err
    code, out, err = await voicecall(area, "replay", "copy", "--from-topic", "dedup.changelog", "--to-topic",
                                     "fee.raw", "--from=-10m", "--from-internal", "--dry-run")
    assert code == 0, err
    assert "total: would copy 0 records" in out
    no_unclosed(err)


async def test_every_replay_and_tail_path_closes_its_clients(area: Area, producer: Any) -> None:
    base = (int(time.time()) - 300) * 1000
    for n in range(4):
        await producer.send_and_wait(area.topic("fee.unique"), fee_value(f"c{n}", n), key=f"c{n}".encode(),
                                     timestamp_ms=base + n, headers=fee_headers(f"c{n}"))
    window = ["--from", times.iso_ms(base), "--to", times.iso_ms(base + 10)]
    runs: list[tuple[list[str], int, str]] = [
        (["replay", "reset", "--service", "billing", "--from", times.iso_ms(base), "--dry-run"], 0,
         "total to reprocess: 4 records"),
        (["replay", "copy", "--from-topic", "fee.unique", "--to-topic", "fee.raw", *window, "--dry-run"], 0,
         "total: would copy 4 records"),
        (["replay", "copy", "--from-topic", "fee.unique", "--to-topic", "fee.raw", *window], 0,
         "total: copied 4 records"),
        (["replay", "copy", "--from-topic", "nope", "--to-topic", "fee.raw", *window], 2, ""),
        (["replay", "copy", "--from-topic", "fee.unique", "--to-topic", "dedup.changelog", *window], 2, ""),
        (["replay", "reset", "--service", "billing", "--from", times.iso_ms(base)], 0,
         "total to reprocess: 4 records"),
        (["tail", "fee.raw", "--from-beginning", "--max", "4", "--timeout", "30"], 0, '"c3"'),
        (["tail", "nope", "--timeout", "1"], 2, ""),
    ]
    for args, expected, says in runs:
        code, out, err = await voicecall(area, *args)
        assert code == expected, (args, err[-6000:])
        assert says in out, (args, out)
        no_unclosed(err)


async def test_a_real_reset_prints_exact_counts_like_its_dry_run(area: Area) -> None:
    """fee.unique is transactional: markers take offsets, and an aborted record is not one to reprocess either."""
    base = (int(time.time()) - 3600) * 1000
    producer = make_transactional_producer(area.settings, f"test-reset-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        for n in range(8):  # one record per transaction: a marker after each
            sid = f"s{n}"
            async with producer.transaction():
                await producer.send_and_wait(area.topic("fee.unique"), fee_value(sid, n), key=sid.encode(),
                                             partition=n % 2, timestamp_ms=base + n * 1000,
                                             headers=fee_headers(sid))
        await producer.begin_transaction()
        await producer.send_and_wait(area.topic("fee.unique"), fee_value("gone", 9), key=b"gone", partition=0,
                                     timestamp_ms=base + 9000, headers=fee_headers("gone"))
        await producer.abort_transaction()
    finally:
        await producer.stop()
    args = ["replay", "reset", "--service", "billing", "--from", times.iso_ms(base + 2000)]
    code, dry, err = await voicecall(area, *args, "--dry-run")
    assert code == 0, err
    code, real, err = await voicecall(area, *args)
    assert code == 0, err
    no_unclosed(err)

    def table(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]

    # s2..s7: three on each of partitions 0 and 1 (s2, s4, s6 and s3, s5, s7), none on 2
    assert [line.split()[-1] for line in table(real)] == ["3", "3", "0"], real
    assert table(real) == table(dry)
    assert "total to reprocess: 6 records" in real and "at most" not in real and "<=" not in real
    assert "committed new offsets" in real
