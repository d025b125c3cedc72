"""One list of deadletter reasons: the code's enumeration, the schema's enum and the table in docs/downstream.md
name the same codes, and every code is one a stage really writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import voicecall
from voicecall.runtime.deadletter import Reason

REPO = Path(__file__).resolve().parents[2]
SERVICES = Path(voicecall.__file__).resolve().parent


def documented() -> list[str]:
    text = (REPO / "docs" / "downstream.md").read_text()
    start = text.index("### Deadletter records\n")
    section = text[start:text.index("\n### ", start + 1)]
    return re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M)


def test_code_schema_and_docs_list_the_same_reasons() -> None:
    codes = [reason.value for reason in Reason]
    schema = json.loads((REPO / "schemas" / "deadletter.schema.json").read_text())
    enum = schema["properties"]["reason"]["enum"]
    assert len(set(codes)) == len(codes)
    assert enum == codes
    assert documented() == codes


def test_every_reason_is_written_somewhere() -> None:
    sources = "\n".join(p.read_text() for p in SERVICES.rglob("*.py") if p.name != "deadletter.py")
    unused = [r.name for r in Reason if not re.search(rf"\bReason\.{r.name}\b", sources)]
    assert unused == []
