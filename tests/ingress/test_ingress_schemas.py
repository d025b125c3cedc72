"""The JSON Schemas in schemas/: valid 2020-12, Huawei's example pushes fit, OpenAPI embeds them unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import referencing
import yaml
from ingress_helpers import F2, STATUS_EXAMPLES, fee_push

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NAMES = {"status_push.schema.json": "StatusPush", "fee_push.schema.json": "FeePush",
         "feeinfo.schema.json": "FeeInfo"}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / name).read_text()))


def validator(name: str) -> jsonschema.Draft202012Validator:
    registry = referencing.Registry().with_resources(
        (load(n)["$id"], referencing.Resource.from_contents(load(n))) for n in NAMES)
    return jsonschema.Draft202012Validator(load(name), registry=registry)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_schemas_are_valid_2020_12(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(load(name))


def test_reference_examples_fit_and_bad_ones_do_not() -> None:
    status, fee = validator("status_push.schema.json"), validator("fee_push.schema.json")
    for body in STATUS_EXAMPLES.values():
        status.validate(orjson.loads(body))
    fee.validate(orjson.loads(F2))
    fee.validate(fee_push(50))
    assert not fee.is_valid(fee_push(51))
    assert not fee.is_valid({"eventType": "fee", "feeLst": [{"callEndTime": ""}]})
    assert not status.is_valid({"eventType": "answer", "statusInfo": {}})
    validator("feeinfo.schema.json").validate(orjson.loads(F2)["feeLst"][0])


def _as_component(node: Any, component: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and value == "feeinfo.schema.json":
                out[key] = "#/components/schemas/FeeInfo"
            elif key == "$ref" and value.startswith("#/$defs/"):
                out[key] = f"#/components/schemas/{component}/$defs/" + value[len("#/$defs/"):]
            else:
                out[key] = _as_component(value, component)
        return out
    if isinstance(node, list):
        return [_as_component(v, component) for v in node]
    return node


def test_openapi_embeds_the_schema_files_unchanged_and_has_the_examples() -> None:
    doc = yaml.safe_load((SCHEMAS / "openapi.yaml").read_text())
    assert doc["openapi"].startswith("3.1")
    for name, component in NAMES.items():
        schema = load(name)
        del schema["$schema"], schema["$id"]
        assert doc["components"]["schemas"][component] == _as_component(schema, component), name
    examples = doc["paths"]["/notify"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"S1", "S2", "S3", "S4", "S5", "F2"}
    for key, body in {**STATUS_EXAMPLES, "F2": F2}.items():
        assert examples[key]["value"] == orjson.loads(body), key
    assert set(doc["paths"]) >= {"/notify/status", "/notify/fee", "/notify", "/healthz", "/readyz", "/metrics"}
