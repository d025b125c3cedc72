"""schemas/asyncapi.yaml: valid AsyncAPI 3.0, covers every topic, every reference resolves, every example fits.

asyncapi-3.0.0.schema.json beside this file is the official AsyncAPI 3.0.0 JSON Schema, copied unchanged from
``schemas/3.0.0-without-$id.json`` of the npm package @asyncapi/specs 6.11.1 (Apache-2.0); no PyPI package ships it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from referencing.exceptions import Unresolvable

import contract_helpers as contract
from voicecall import topics
from voicecall.runtime import cloudevents, config, deadletter
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

OFFICIAL = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())

def official_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}"
            for e in jsonschema.Draft7Validator(OFFICIAL).iter_errors(doc)]


def test_document_is_valid_asyncapi_3() -> None:
    doc = contract.load_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert official_errors(doc) == []


def test_official_schema_catches_mistakes() -> None:
    doc = contract.load_asyncapi()
    broken = copy.deepcopy(doc)
    broken["operations"]["ingressSendsFee"]["action"] = "publish"  # AsyncAPI 2 wording
    assert official_errors(broken)
    broken = copy.deepcopy(doc)
    broken["channels"]["billing"]["bindings"]["kafka"]["partitions"] = "twelve"
    assert official_errors(broken)


def local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in local_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in local_refs(value)]
    return []


def test_every_reference_resolves() -> None:
    doc = contract.load_asyncapi()
    refs = local_refs(doc)
    files = {ref for ref in refs if not ref.startswith("#")}
    for ref in refs:
        if ref.startswith("#"):
            contract.pointer(doc, ref)  # raises KeyError when dangling
    assert files, "messages name their payload schema files"
    missing = {name for name in files if not (contract.SCHEMAS / name).exists()}
    assert not missing, f"asyncapi.yaml names schema files that do not exist: {missing}"
    # Inside the schema files: every $ref (also across files) resolves through the registry of schemas/.
    for name in sorted(files):
        schema = json.loads((contract.SCHEMAS / name).read_text())
        resolver = contract.registry().resolver(base_uri=schema["$id"])
        for ref in local_refs(schema):
            try:
                resolver.lookup(ref)
            except Unresolvable as error:  # pragma: no cover - the assertion message is the point
                pytest.fail(f"{name}: $ref {ref} does not resolve: {error}")


def test_every_topic_has_a_channel_with_its_settings() -> None:
    doc = contract.load_asyncapi()
    settings = config.load(topics.TopicSettings, topic_prefix="voicecall.")
    public = {t.name: t for t in topics.plan(settings) if not t.spec.internal}
    channels = {c["address"]: c for c in doc["channels"].values()}
    assert set(channels) == set(public)
    for name, planned in public.items():
        binding = channels[name]["bindings"]["kafka"]
        assert binding["topic"] == name
        assert binding["partitions"] == planned.partitions
        assert binding["replicas"] == planned.replication
        assert binding["topicConfiguration"]["cleanup.policy"] == [planned.configs["cleanup.policy"]]
        if "retention.ms" in planned.configs:  # a compacted topic keeps each key's latest record
            assert str(binding["topicConfiguration"]["retention.ms"]) == planned.configs["retention.ms"]
    # Every channel is written by some operation.
    sent = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert sent == {f"#/channels/{key}" for key in doc["channels"]}


def test_schema_files_are_valid_json_schema() -> None:
    for path in sorted(contract.SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith("/" + path.name), path.name


def examples() -> list[tuple[str, str, dict[str, Any]]]:
    doc = contract.load_asyncapi()
    return [(suffix, example["name"], example)
            for suffix, c in contract.contracts().items()
            for example in doc["components"]["messages"][c.message]["examples"]]


@pytest.mark.parametrize(("suffix", "name", "example"), examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_fits_its_schemas(suffix: str, name: str, example: dict[str, Any]) -> None:
    contract.check_payload(suffix, example["payload"])
    contract.check_headers(suffix, example["headers"])


def test_every_message_has_an_example() -> None:
    named = {suffix for suffix, _, _ in examples()}
    assert named == set(contract.contracts())


def test_readme_indexes_every_topic_and_schema() -> None:
    readme = (contract.SCHEMAS / "README.md").read_text()
    for suffix, c in contract.contracts().items():
        row = re.search(rf"^\|\s*`voicecall\.{re.escape(suffix)}`\s*\|.*$", readme, re.MULTILINE)
        assert row, f"README has no row for voicecall.{suffix}"
        assert c.schema_file in row.group(0)


FEE = {"sessionId": "s-1", "callEndTime": "2019-01-24 03:05:15", "fwdAnswerTime": ""}
FEE_HEADERS = [("ce_specversion", b"1.0"), ("ce_id", b"x1"), ("ce_source", b"/voicecall/ingress"),
               ("ce_type", b"com.huaweicloud.voicecall.fee"), ("ce_time", b"2019-01-24T03:05:16.402Z"),
               ("content-type", b"application/json")]


def test_validator_accepts_a_good_record_and_rejects_broken_ones() -> None:
    value = json.dumps(FEE).encode()
    assert contract.validate_record("voicecall.fee.raw", b"s-1", value, FEE_HEADERS)["sessionId"] == "s-1"
    assert contract.validate_record("p.fee.unique", b"s-1", value, FEE_HEADERS, prefix="p.")
    broken = {
        "missing sessionId": ("voicecall.fee.raw", b"s-1", json.dumps({"callEndTime": ""}).encode(), FEE_HEADERS),
        "key is not sessionId": ("voicecall.fee.raw", b"other", value, FEE_HEADERS),
        "not JSON": ("voicecall.fee.raw", b"s-1", b"{", FEE_HEADERS),
        "ce_type of another topic": ("voicecall.billing", b"s-1", value, FEE_HEADERS),
        "no ce_id": ("voicecall.fee.raw", b"s-1", value, [h for h in FEE_HEADERS if h[0] != "ce_id"]),
        "bad ce_time": ("voicecall.fee.raw", b"s-1", value,
                        [h if h[0] != "ce_time" else ("ce_time", b"yesterday") for h in FEE_HEADERS]),
        "unknown topic": ("voicecall.nope", b"s-1", value, FEE_HEADERS),
    }
    for what, args in broken.items():
        with pytest.raises(contract.ContractError):
            contract.validate_record(*args)
            pytest.fail(f"accepted: {what}")


def test_shared_deadletter_builder_fits_the_contract() -> None:
    """The runtime's deadletter builder is what every stage uses: JSON, text, base64 and truncated payloads."""
    origin = {"path": "/notify/fee", "client": "127.0.0.1"}

    def push(reason: Reason, raw: bytes, **kwargs: Any) -> Record:
        return deadletter.build(reason, "ingress", origin, topic="voicecall.deadletter", key=None, raw=raw,
                                detail="what went wrong", **kwargs)

    cases = [
        push(Reason.INVALID_SHAPE, b'{"a":1}', parsed={"a": 1}),
        push(Reason.NOT_JSON, b"{not json"),
        push(Reason.INVALID_UTF8, b"\xff\xfe\x00"),
        push(Reason.TOO_LARGE, b"x" * 5000, max_bytes=1024),
        deadletter.build(Reason.BAD_TIME, "billing", {"topic": "voicecall.fee.unique", "partition": 1, "offset": 9},
                         topic="voicecall.deadletter", key=b"s", raw=b'{"sessionId": "s"}',
                         parsed={"sessionId": "s"}, detail="callEndTime unreadable"),
    ]
    for case in cases:
        contract.validate_record(case.topic, case.key, case.value, case.headers)
    assert orjson.loads(cases[3].value or b"")["truncated"] is True


CE_TYPES = {"status.raw": cloudevents.TYPE_STATUS + "answer", "fee.raw": cloudevents.TYPE_FEE,
            "fee.unique": cloudevents.TYPE_FEE, "billing": cloudevents.TYPE_BILLING,
            "recording.stored": cloudevents.TYPE_RECORDING_STORED,
            "recording.failed": cloudevents.TYPE_RECORDING_FAILED, "deadletter": cloudevents.TYPE_DEADLETTER,
            "calls": cloudevents.TYPE_CALL}


@pytest.mark.parametrize("suffix", sorted(CE_TYPES))
def test_every_message_requires_the_cloudevents_headers_with_the_type_the_stages_write(suffix: str) -> None:
    """Each topic's header schema: the ce_type the code writes (runtime/cloudevents.py), every required CloudEvents
    attribute, and no other topic's ce_type."""
    assert set(CE_TYPES) == set(contract.contracts())
    good = {name: value.decode() for name, value in cloudevents.headers(CE_TYPES[suffix], "/voicecall/test")}
    contract.check_headers(suffix, good)
    for name in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"):
        with pytest.raises(contract.ContractError):
            contract.check_headers(suffix, {k: v for k, v in good.items() if k != name})
    for ce_type in CE_TYPES.values():
        if ce_type != CE_TYPES[suffix]:
            with pytest.raises(contract.ContractError):
                contract.check_headers(suffix, good | {"ce_type": ce_type})
    with pytest.raises(contract.ContractError):
        contract.check_headers(suffix, good | {"ce_specversion": "0.3"})
