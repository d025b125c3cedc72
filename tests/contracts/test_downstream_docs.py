"""docs/downstream.md: the aiokafka example runs as printed against the real broker, and the page states what the
contract and the topic definition say (CloudEvents headers, read_committed, retention, keys)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
from aiokafka import TopicPartition

import contract_helpers as contract
from kafka_helpers import fresh_topics
from voicecall import topics
from voicecall.runtime.kafka import make_admin, make_producer

DOC = Path(__file__).resolve().parents[2] / "docs" / "downstream.md"


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"### {title}\n")
    following = text.find("\n#", start + 4)
    return text[start:following if following != -1 else len(text)]


def code_block(title: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", section(title), re.S)
    assert match, f"no {language} block under {title!r}"
    return match.group(1)


def billing_example() -> tuple[dict[str, object], list[tuple[str, bytes]]]:
    doc = contract.load_asyncapi()
    example = doc["components"]["messages"]["billingComputed"]["examples"][0]
    return example["payload"], [(k, str(v).encode()) for k, v in example["headers"].items()]


async def test_the_aiokafka_example_runs_as_documented(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await fresh_topics(kafka_bootstrap)
    prefix = settings.topic_prefix
    topic, group = topics.name(settings, "billing"), f"{prefix}crm.billing-export"
    source = code_block("Python (aiokafka)", "python")
    for printed, actual in (('"voicecall.billing"', repr(topic)), ('"localhost:9092"', repr(kafka_bootstrap)),
                            ('"crm.billing-export"', repr(group))):
        assert printed in source, printed  # the example is still the one this test knows
        source = source.replace(printed, actual)
    script = tmp_path / "example.py"
    script.write_text(source)

    payload, headers = billing_example()
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(payload), key=str(payload["sessionId"]).encode(),
                                     headers=headers)
    finally:
        await producer.stop()
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
        expected = [payload["sessionId"], "voicecall.billing.computed", dict(headers)["ce_id"].decode(),
                    payload["totalBilledMinutes"], payload["amount"], payload["ruleVersion"]]
        assert line == [str(v) for v in expected]
        # It commits after processing: the group's offset moves past the record.
        admin = make_admin(settings)
        await admin.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                if sum(o.offset for tp, o in offsets.items() if isinstance(tp, TopicPartition)) == 1:
                    break
                assert time.monotonic() < deadline, offsets
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_the_kcat_line_reads_committed_records_of_a_topic() -> None:
    line = " ".join(code_block("kcat", "sh").replace("\\\n", " ").split())
    assert line.startswith("kcat -b ")
    assert "-X isolation.level=read_committed" in line and " -G " in line
    assert line.split()[-1] == "voicecall.billing"


def test_the_page_states_the_contract() -> None:
    text = DOC.read_text()
    for required in contract.load_asyncapi()["components"]["schemas"]["cloudEventsHeaders"]["required"]:
        assert f"`{required}`" in text, required
    assert "isolation.level=read_committed" in text
    assert "upsert by key" in text.lower()
    for suffix, c in contract.contracts().items():
        row = re.search(rf"^\| `voicecall\.{re.escape(suffix)}` \|.*$", text, re.M)
        assert row and c.schema_file in row.group(0), suffix
        assert ("sessionId" in row.group(0)) == c.keyed_by_session, suffix
    # Retention as the topic definition has it (14 days by default, deadletter 30).
    default_days = topics.TopicSettings.model_fields["topic_retention"].default / 86400
    deadletter = next(t for t in topics.TOPICS if t.suffix == "deadletter")
    retention = section("Retention")
    assert f"**{default_days:g} days**" in retention
    assert deadletter.retention_ms is not None and f"**{deadletter.retention_ms // topics.DAY_MS} days**" in retention
