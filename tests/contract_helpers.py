"""Validate any produced Kafka record against its topic's contract: the one in schemas/asyncapi.yaml.

Other end-to-end tests use it as ``from contract_helpers import validate_record, validate_records`` (the suite's
root conftest sits in tests/ without ``__init__.py``, so pytest puts tests/ on ``sys.path``). The checks:

* the value is JSON and validates against the per-topic JSON Schema file the AsyncAPI message names;
* the headers validate against the message's header schema (CloudEvents binary mode, ``ce_type`` of the topic);
* the key is the value's ``sessionId`` (UTF-8) on every topic keyed by sessionId.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from voicecall import topics

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
ASYNCAPI = SCHEMAS / "asyncapi.yaml"
DEFAULT_PREFIX = "voicecall."
COMPACTED = frozenset(t.suffix for t in topics.TOPICS if t.compacted)


class ContractError(AssertionError):
    pass


@dataclass(frozen=True)
class Contract:
    suffix: str  # topic name after the prefix
    message: str  # components/messages name
    schema_file: str  # payload schema file name in schemas/
    headers_schema: dict[str, Any]  # resolved, draft-07 (AsyncAPI schema)
    keyed_by_session: bool


def load_asyncapi() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())  # type: ignore[no-any-return]


def pointer(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ContractError(f"not a local reference: {ref}")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def inline(doc: dict[str, Any], node: Any) -> Any:
    """``node`` with every local ``$ref`` replaced by its target (the AsyncAPI document has no cycles)."""
    if isinstance(node, dict):
        if set(node) == {"$ref"} and node["$ref"].startswith("#/"):
            return inline(doc, pointer(doc, node["$ref"]))
        return {k: inline(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(doc, v) for v in node]
    return node


@cache
def contracts() -> dict[str, Contract]:
    """Topic suffix → its contract, read from the AsyncAPI document."""
    doc = load_asyncapi()
    result = {}
    for channel in doc["channels"].values():
        address = channel["address"]
        if not address.startswith(DEFAULT_PREFIX):
            raise ContractError(f"channel address {address} lacks the default prefix {DEFAULT_PREFIX}")
        suffix = address[len(DEFAULT_PREFIX):]
        (message_ref,) = channel["messages"].values()
        message = inline(doc, message_ref)
        name = message_ref["$ref"].rsplit("/", 1)[-1]
        key_schema = message["bindings"]["kafka"]["key"]
        result[suffix] = Contract(suffix, name, message["payload"]["schema"]["$ref"], message["headers"],
                                  keyed_by_session=key_schema.get("type") == "string")
    return result


@cache
def registry() -> Registry:
    """Every schemas/*.schema.json under its ``$id``, so relative ``$ref``s between files resolve."""
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def payload_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    path = SCHEMAS / schema_file
    if not path.exists():
        raise ContractError(f"schemas/{schema_file} is referenced by asyncapi.yaml but does not exist")
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry(),
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def suffix_of(topic: str, prefix: str = DEFAULT_PREFIX) -> str:
    if not topic.startswith(prefix):
        raise ContractError(f"{topic} does not start with the prefix {prefix}")
    return topic[len(prefix):]


def _errors(validator: Any, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(instance)]


def check_payload(suffix: str, value: Any) -> None:
    contract = contracts()[suffix]
    problems = _errors(payload_validator(contract.schema_file), value)
    if problems:
        raise ContractError(f"{suffix} value does not fit {contract.schema_file}: " + "; ".join(problems[:5]))


def check_headers(suffix: str, headers: dict[str, str]) -> None:
    contract = contracts()[suffix]
    validator = jsonschema.Draft7Validator(contract.headers_schema,
                                           format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    problems = _errors(validator, headers)
    if problems:
        raise ContractError(f"{suffix} headers do not fit message {contract.message}: " + "; ".join(problems[:5]))


def validate_record(topic: str, key: bytes | None, value: bytes | None,
                    headers: Sequence[tuple[str, bytes]] | None, prefix: str = DEFAULT_PREFIX) -> Any:
    """Raise :class:`ContractError` unless the record fits its topic's contract; returns the parsed value."""
    suffix = suffix_of(topic, prefix)
    if suffix not in contracts():
        raise ContractError(f"no contract for topic {topic} in schemas/asyncapi.yaml")
    if value is None:
        if suffix in COMPACTED and not headers:  # a tombstone: the key's record is removed
            return None
        raise ContractError(f"{topic}: a record without a value")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise ContractError(f"{topic}: value is not JSON: {error}") from None
    check_payload(suffix, parsed)
    decoded = {}
    for name, raw in headers or ():
        if name in decoded:
            raise ContractError(f"{topic}: header {name} appears twice")
        decoded[name] = raw.decode("utf-8")
    check_headers(suffix, decoded)
    if contracts()[suffix].keyed_by_session and (key is None or key.decode() != parsed.get("sessionId")):
        raise ContractError(f"{topic}: key {key!r} is not the value's sessionId {parsed.get('sessionId')!r}")
    return parsed


def validate_records(records: Iterable[Any], prefix: str = DEFAULT_PREFIX) -> int:
    """Validate aiokafka ConsumerRecords; returns how many were checked."""
    count = 0
    for record in records:
        try:
            validate_record(record.topic, record.key, record.value, record.headers, prefix)
        except ContractError as error:
            raise ContractError(f"{record.topic}/{record.partition}/{record.offset}: {error}") from None
        count += 1
    return count
