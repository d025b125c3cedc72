"""Reset billing, run it again: the same billing records for the window (same keys and bytes), none outside it."""

from __future__ import annotations

import asyncio
import copy
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import orjson
import yaml
from replay_helpers import Area, fee_headers

from contract_helpers import ASYNCAPI, validate_records
from kafka_helpers import read_to_end
from voicecall.replay import reset as replay_reset
from voicecall.runtime import cloudevents
from voicecall.runtime.kafka import make_transactional_producer

CALLS = 12


def fee_examples() -> list[dict[str, Any]]:
    """The documented fee examples (a voice callback, an unanswered notification) as templates."""
    doc = yaml.safe_load(ASYNCAPI.read_text())
    return [example["payload"] for example in doc["components"]["messages"]["fee"]["examples"]]


async def run_billing(area: Area, expected_total: int, **extra_env: str) -> list[Any]:
    """Start `voicecall billing`, wait until the billing topic holds ``expected_total`` records, SIGTERM it."""
    env = area.env() | {"VOICECALL_BATCH_TIME": "50ms"} | extra_env
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicecall", "billing", env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        records = await read_to_end(area.settings, "billing", expected=expected_total)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert len(records) == expected_total, err.decode()[-2000:]
    return records


async def produce_calls(area: Area, producer: Any, transactions: bool = False) -> tuple[int, int, set[bytes]]:
    """CALLS fee records one minute apart in fee.unique; returns (base, the reset time, keys at/after it).

    With ``transactions``, each record is written in its own transaction, as the deduplicator writes fee.unique
    when lightly loaded: every record is followed by a marker stamped with the time it was written (now)."""
    base = (int(time.time()) - 7200) * 1000
    since = base + (CALLS // 2) * 60_000
    templates = fee_examples()
    if transactions:
        producer = make_transactional_producer(area.settings, f"test-reprocess-{uuid.uuid4().hex[:8]}")
        await producer.start()
    try:
        for n in range(CALLS):
            fee = copy.deepcopy(templates[n % len(templates)])
            fee["sessionId"] = sid = f"call-{n:02d}@callenabler245.huaweicaas.com"
            if transactions:
                await producer.begin_transaction()
            await producer.send_and_wait(area.topic("fee.unique"), orjson.dumps(fee), key=sid.encode(),
                                         timestamp_ms=base + n * 60_000, headers=fee_headers(sid))
            if transactions:
                await producer.commit_transaction()
    finally:
        if transactions:
            await producer.stop()
    in_window = {f"call-{n:02d}@callenabler245.huaweicaas.com".encode() for n in range(CALLS // 2, CALLS)}
    return base, since, in_window


def after_first_run(first: list[Any], both: list[Any]) -> list[Any]:
    """The records of the second run: past the first run's last offset in each partition."""
    first_ends: dict[int, int] = defaultdict(int)
    for r in first:
        first_ends[r.partition] = max(first_ends[r.partition], r.offset + 1)
    return [r for r in both if r.offset >= first_ends[r.partition]]


async def test_reset_then_run_billing_again_gives_the_same_records_for_the_window(area: Area,
                                                                                   producer: Any) -> None:
    _, since, in_window = await produce_calls(area, producer, transactions=True)

    first = await run_billing(area, CALLS)
    assert {r.key for r in first} == {f"call-{n:02d}@callenabler245.huaweicaas.com".encode() for n in range(CALLS)}
    assert validate_records(first, prefix=area.prefix) == CALLS

    assert await replay_reset.reset(area.settings, "billing", since, dry_run=False) == 0
    both = await run_billing(area, CALLS + len(in_window))

    again = after_first_run(first, both)
    assert validate_records(again, prefix=area.prefix) == len(in_window)
    # Exactly the calls of the window again — none from before it — with the same key, bytes and ce_id.
    assert {r.key for r in again} == in_window
    before = {r.key: r for r in first}
    for r in again:
        assert r.value == before[r.key].value
        assert cloudevents.header(r.headers, "ce_id") == cloudevents.header(before[r.key].headers, "ce_id")
        assert r.partition == before[r.key].partition  # keyed by sessionId: same partition, per-call order kept


async def test_reprocessing_after_a_tariff_change_replaces_the_windows_records_by_key(area: Area,
                                                                                       producer: Any) -> None:
    """After a rule change: the window's calls get new values under the same keys; an upsert by key ends with one
    record per call — the new rules for the window, the old ones before it — so nothing is billed twice."""
    _, since, in_window = await produce_calls(area, producer)
    first = await run_billing(area, CALLS)
    old_version = {orjson.loads(r.value)["ruleVersion"] for r in first}
    assert len(old_version) == 1

    assert await replay_reset.reset(area.settings, "billing", since, dry_run=False) == 0
    both = await run_billing(area, CALLS + len(in_window), VOICECALL_BILLING_TARIFF="001=30,002=30")
    again = after_first_run(first, both)
    assert validate_records(again, prefix=area.prefix) == len(in_window)
    assert {r.key for r in again} == in_window
    before = {r.key: r for r in first}
    for r in again:
        value, old = orjson.loads(r.value), orjson.loads(before[r.key].value)
        assert value["ruleVersion"] != old["ruleVersion"] and "001=30" in value["ruleVersion"]
        assert value["amount"] == 30 * value["totalBilledMinutes"]
        assert {k: v for k, v in value.items() if k not in ("ruleVersion", "rate", "amount", "amountDecimal")} == {
            k: v for k, v in old.items() if k not in ("ruleVersion", "rate", "amount", "amountDecimal")}
        assert r.partition == before[r.key].partition  # same key, same partition: the new record comes later
        assert cloudevents.header(r.headers, "ce_id") != cloudevents.header(before[r.key].headers, "ce_id")

    # What a consumer that upserts by key holds at the end: one record per call, none billed twice.
    upserted = {r.key: orjson.loads(r.value) for r in sorted(both, key=lambda r: (r.partition, r.offset))}
    assert len(upserted) == CALLS
    for key, value in upserted.items():
        assert (value["ruleVersion"] in old_version) == (key not in in_window), key
