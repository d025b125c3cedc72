"""Write ``scaledobject.schema.json`` and ``triggerauthentication.schema.json`` (KEDA, ``keda.sh/v1alpha1``).

Source: the pydantic models of the PyPI package ``cloudcoil-models-keda``, which are generated from KEDA's own CRDs
(package version 2.16.1.0 = KEDA v2.16.1). Their JSON Schema is then made as strict as the API server is when
``kubectl apply`` sends a manifest (field validation ``Strict``, the default since Kubernetes 1.27): an unknown
field is an error, so every object that lists its properties gets ``additionalProperties: false``; ``apiVersion``,
``kind`` and ``metadata`` are required as kubectl requires them. Titles and null defaults are dropped; nothing
else is changed, so a value type (e.g. trigger metadata values must be strings) is exactly the CRD's.

Not a dependency of the project: run it in a scratch virtualenv when moving to a newer KEDA, e.g.

    python3 -m venv /tmp/keda-models && /tmp/keda-models/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda-models/bin/python deploy/schemas/derive_keda.py
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cloudcoil.models.keda import v1alpha1  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
PACKAGE = "cloudcoil-models-keda"


def tighten(node: Any) -> Any:
    if isinstance(node, list):
        return [tighten(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: tighten(value) for key, value in node.items()
           if key != "title" and not (key == "default" and value is None)}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def derive(model: Any, kind: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = tighten(raw)
    props = schema["properties"]
    props["apiVersion"] = {"const": "keda.sh/v1alpha1"}
    props["kind"] = {"const": kind}
    props["metadata"] = {"$ref": "#/$defs/ObjectMeta"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{kind.lower()}.schema.json",
        "title": f"KEDA {kind} (keda.sh/v1alpha1)",
        "$comment": (f"Derived by deploy/schemas/derive_keda.py from the pydantic models of the PyPI package "
                     f"{PACKAGE} {version(PACKAGE)} (generated from KEDA's CRDs), with unknown fields rejected "
                     f"as the API server's strict field validation does. Do not edit: re-derive."),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": props,
        "additionalProperties": False,
        "$defs": schema["$defs"],
    }


def main() -> None:
    for model, kind in ((v1alpha1.ScaledObject, "ScaledObject"),
                        (v1alpha1.TriggerAuthentication, "TriggerAuthentication")):
        path = HERE / f"{kind.lower()}.schema.json"
        path.write_text(json.dumps(derive(model, kind), indent=2, sort_keys=False) + "\n")
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
