"""`voicecall replay copy` from a transactional topic (fee.unique and billing are written in transactions).

The copy reads ``read_committed``: records of aborted transactions are never copied, records of a transaction still
open when the copy starts are not copied either (they are past the last stable offset), and the transaction
markers that occupy offsets at the end of a partition do not keep the copy waiting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from replay_helpers import Area, fee_headers, fee_value

from kafka_helpers import read_to_end
from voicecall.replay import copy as replay_copy, window
from voicecall.runtime.kafka import make_transactional_producer


async def send_in_transaction(producer: Any, topic: str, sids: list[str], stamps: list[int], *,
                              commit: bool) -> None:
    await producer.begin_transaction()
    for sid, stamp in zip(sids, stamps, strict=True):
        await producer.send_and_wait(topic, fee_value(sid, 0), key=sid.encode(), partition=0, timestamp_ms=stamp,
                                     headers=fee_headers(sid))
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


async def test_copy_skips_aborted_and_open_transactions_and_ends(area: Area) -> None:
    base = (int(time.time()) - 3600) * 1000
    t1, t2 = base + 10_000, base + 20_000
    topic = area.topic("fee.unique")
    producer = make_transactional_producer(area.settings, f"test-replay-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        # committed: before, inside and after the window; aborted: inside it; committed again: inside it.
        await send_in_transaction(producer, topic, ["before", "in-1", "in-2"], [t1 - 1, t1, t1 + 1], commit=True)
        await send_in_transaction(producer, topic, ["aborted-1", "aborted-2"], [t1 + 2, t1 + 3], commit=False)
        await send_in_transaction(producer, topic, ["in-3", "after"], [t2 - 1, t2], commit=True)
        committed_only = await asyncio.wait_for(
            replay_copy.copy(area.settings, "fee.unique", "fee.raw", window.Window(t1, t2), replay_id="tx1"), 60)
        assert committed_only.copied == 3 and not committed_only.interrupted
        # "before" is not read (the copy starts at the first offset at/after T1); "after" is read and skipped; the
        # aborted records are never even delivered.
        assert committed_only.skipped == 1

        # A transaction left open: the copy stops at the last stable offset instead of waiting for it.
        await producer.begin_transaction()
        await producer.send_and_wait(topic, fee_value("open", 0), key=b"open", partition=0, timestamp_ms=t1 + 5,
                                     headers=fee_headers("open"))
        try:
            while_open = await asyncio.wait_for(
                replay_copy.copy(area.settings, "fee.unique", "fee.raw", window.Window(t1, t2), replay_id="tx2"), 60)
        finally:
            await producer.abort_transaction()
        assert while_open.copied == 3
    finally:
        await producer.stop()

    copies = await read_to_end(area.settings, "fee.raw", expected=6)
    assert [(r.key, dict(r.headers)[replay_copy.REPLAY_ID]) for r in copies] == [
        (key, run) for run in (b"tx1", b"tx2") for key in (b"in-1", b"in-2", b"in-3")]
