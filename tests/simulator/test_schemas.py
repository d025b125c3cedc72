"""Generated payloads validate against the ingress's JSON Schemas (schemas/*.schema.json).

The schema files are loaded from the repository; if they are missing this test fails (it never skips)."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from simulator_helpers import START

from voicecall.simulator import pushes
from voicecall.simulator.calls import CallOptions, generate

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def load(name: str) -> dict:  # type: ignore[type-arg]
    path = SCHEMAS / name
    assert path.is_file(), f"{path} is missing: the ingress's JSON Schemas are needed for this test"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def validators() -> tuple[Draft202012Validator, Draft202012Validator, Draft202012Validator]:
    status, fee, feeinfo = (load(f"{name}.schema.json") for name in ("status_push", "fee_push", "feeinfo"))
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in (status, fee, feeinfo))
    # fee_push refers to feeinfo.schema.json relative to its $id
    return tuple(Draft202012Validator(schema, registry=registry)  # type: ignore[return-value]
                 for schema in (status, fee, feeinfo))


def test_generated_pushes_validate() -> None:
    status_validator, fee_validator, feeinfo_validator = validators()
    for schema in (status_validator, fee_validator, feeinfo_validator):
        Draft202012Validator.check_schema(schema.schema)
    counts = {"status": 0, "fee": 0}
    for options in (CallOptions(seed=21, start=START, rate=80.0, url_only_share=0.3),
                    CallOptions(seed=22, start=START, rate=80.0, empty_times=True, per_leg_status=False,
                                double_space_share=0.5)):
        for item in pushes.timeline(generate(options, 700)):
            if isinstance(item, pushes.StatusPush):
                errors = list(status_validator.iter_errors(json.loads(item.body)))
                assert not errors, (item.body, errors[0].message)
                counts["status"] += 1
            elif isinstance(item, pushes.FeePush):
                body = json.loads(item.body)
                errors = list(fee_validator.iter_errors(body))
                assert not errors, (item.body[:300], errors[0].message)
                for record in body["feeLst"]:
                    assert not list(feeinfo_validator.iter_errors(record))
                counts["fee"] += 1
    assert counts["status"] > 4000 and counts["fee"] > 50


def test_the_schemas_do_reject_a_broken_push() -> None:
    # guards against a validator that accepts anything (e.g. an unresolved $ref)
    status_validator, fee_validator, _ = validators()
    assert list(status_validator.iter_errors({"eventType": "answer"}))
    assert list(fee_validator.iter_errors({"eventType": "fee", "feeLst": [{"callEndTime": "x"}]}))
    assert list(fee_validator.iter_errors({"eventType": "fee", "feeLst": [{"sessionId": "s"}] * 51}))
