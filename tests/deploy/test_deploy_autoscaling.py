"""Scaling as deployed: KEDA scales each consumer stage on its consumer lag, an HPA the ingress on CPU; every
workload has a PodDisruptionBudget and spreads across zones.

:func:`problems` states the rules over one built overlay. The tests run it on both overlays (no problem) and on
copies broken in one place each (that problem is reported), so no rule can pass by being blind.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import pytest
from deploy_helpers import OVERLAYS, ROOT, autoscalers, by_kind, config_env, load_schema, one, workloads

from voicecall.runtime import config
from voicecall.runtime.kafka import group_id
from voicecall.topics import manifests

Doc = dict[str, Any]
Built = dict[str, list[Doc]]
CONSUMERS = [s for s in manifests.WORKLOADS if s != "ingress"]
ZONE = "topology.kubernetes.io/zone"
# The trigger metadata KEDA's "Apache Kafka" scaler (type `kafka`) reads, from its documentation
# (keda.sh/docs/2.17/scalers/apache-kafka). It ignores any other key, so a misspelt one would pass unnoticed.
KAFKA_SCALER_PARAMETERS = frozenset({
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
    "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version",
    "partitionLimitation", "sasl", "saslTokenProvider", "tls", "unsafeSsl", "awsRegion",
})
RESULTS = ROOT / "bench" / "RESULTS.md"


def container(workload: Doc) -> Doc:
    return dict(workload["spec"]["template"]["spec"]["containers"][0])


def workload_of(docs: list[Doc], service: str) -> Doc:
    return next(w for w in workloads(docs) if container(w)["args"][0] == service)


def input_topic(service: str) -> str:
    """The stage's (first) input: KEDA's trigger topic. The calls stage reads several, co-partitioned ones."""
    access = next(a for a in manifests.SERVICES if a.service == service)
    inputs = [s for s in access.reads if s != "dedup.changelog"]
    assert len(inputs) == 1 or service == "calls"
    return inputs[0]


def ca_secret(workload: Doc, cafile: str) -> tuple[str, str] | None:
    """(Secret name, key) of the CA file the container reads, through its volume mount."""
    path = PurePosixPath(cafile)
    mount = next((m for m in container(workload)["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent),
                 None)
    volume = next((v for v in workload["spec"]["template"]["spec"]["volumes"]
                   if mount and v["name"] == mount["name"] and "secret" in v), None)
    if volume is None:
        return None
    items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
    return volume["secret"]["secretName"], items.get(path.name, path.name)


def scaledobject_problems(docs: list[Doc], service: str) -> list[str]:
    env = config_env(docs)
    settings = config.CommonSettings(topic_prefix=env["VOICECALL_TOPIC_PREFIX"])
    namespace = one(docs, "ServiceAccount", "voicecall")["metadata"]["namespace"]
    partitions = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in by_kind(docs, "KafkaTopic")}
    workload = workload_of(docs, service)
    name = workload["metadata"]["name"]
    found = [a for a in autoscalers(docs, workload) if a["kind"] == "ScaledObject"]
    if len(found) != 1:
        return [f"{name}: expected one ScaledObject, found {len(found)}"]
    spec = found[0]["spec"]
    out = []
    topic = settings.topic_prefix + input_topic(service)
    if spec.get("minReplicaCount", 0) < 1:
        out.append(f"{name}: minReplicaCount {spec.get('minReplicaCount')} (unset = 0): never scale a stage to zero")
    if (maximum := spec.get("maxReplicaCount")) != partitions[topic]:
        out.append(f"{name}: maxReplicaCount {maximum} != {partitions[topic]} partitions of {topic}")
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        out.append(f"{name}: minReplicaCount above maxReplicaCount")
    scale_down = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}) \
        .get("scaleDown", {})
    if scale_down.get("stabilizationWindowSeconds", 300) < 300:
        out.append(f"{name}: scale-down reacts in under 5 minutes: every change is a rebalance")
    if len(spec["triggers"]) != 1 or spec["triggers"][0]["type"] != "kafka":
        return [*out, f"{name}: expected one trigger of type kafka"]
    trigger = spec["triggers"][0]
    meta = trigger["metadata"]
    if unknown := sorted(set(meta) - KAFKA_SCALER_PARAMETERS):
        out.append(f"{name}: unknown kafka scaler parameter(s) {unknown}")
    bootstrap_host, _, port = env["VOICECALL_KAFKA_BOOTSTRAP"].partition(":")
    expected = {
        "topic": topic,
        "consumerGroup": group_id(settings, service),
        "bootstrapServers": f"{bootstrap_host}.{namespace}.svc:{port}",
        "limitToPartitionsWithLag": "true",
        "offsetResetPolicy": "earliest",  # runtime.kafka.make_consumer's auto_offset_reset
        "sasl": env["VOICECALL_KAFKA_SASL_MECHANISM"].lower().replace("-", "_").replace("_sha_", "_sha"),
        "tls": "enable" if env["VOICECALL_KAFKA_SECURITY_PROTOCOL"].endswith("SSL") else "disable",
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            out.append(f"{name}: trigger {key} is {meta.get(key)!r}, expected {value!r}")
    if meta.get("allowIdleConsumers", "false") != "false":
        out.append(f"{name}: allowIdleConsumers would scale past the partitions")
    if not re.fullmatch(r"[1-9]\d*", meta.get("lagThreshold", "")):
        out.append(f"{name}: lagThreshold {meta.get('lagThreshold')!r} is not a positive integer")
    return out + trigger_authentication_problems(docs, service, trigger, env)


def trigger_authentication_problems(docs: list[Doc], service: str, trigger: Doc, env: dict[str, str]) -> list[str]:
    """KEDA must authenticate exactly as the stage's pods do: same user, same password Secret, same CA."""
    workload = workload_of(docs, service)
    name = workload["metadata"]["name"]
    ref = trigger.get("authenticationRef", {})
    auths = [d for d in by_kind(docs, ref.get("kind", "TriggerAuthentication"))
             if d["metadata"]["name"] == ref.get("name")]
    if len(auths) != 1:
        return [f"{name}: authenticationRef {ref} names no TriggerAuthentication"]
    spec = auths[0]["spec"]
    params = {e["parameter"]: ("env", e["name"], e.get("containerName")) for e in spec.get("env", [])}
    params |= {s["parameter"]: ("secret", s["name"], s["key"]) for s in spec.get("secretTargetRef", [])}
    c = container(workload)
    pod_env = {e["name"]: e for e in c.get("env", [])}
    out = []
    user = params.get("username")
    if user is None or user[0] != "env" or user[2] != c["name"] or user[1] not in pod_env \
            or pod_env[user[1]].get("value") != manifests.user_name(service):
        out.append(f"{name}: username is not the stage's own user (from its env): {user}")
    pod_password = pod_env["VOICECALL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    if params.get("password") != ("secret", pod_password["name"], pod_password["key"]):
        out.append(f"{name}: password {params.get('password')} is not the stage's {pod_password}")
    pod_ca = ca_secret(workload, env["VOICECALL_KAFKA_SSL_CAFILE"])
    if pod_ca is None or params.get("ca") != ("secret", *pod_ca):
        out.append(f"{name}: ca {params.get('ca')} is not the CA the stage trusts {pod_ca}")
    return out


def ingress_problems(docs: list[Doc]) -> list[str]:
    workload = workload_of(docs, "ingress")
    hpas = [a for a in autoscalers(docs, workload) if a["kind"] == "HorizontalPodAutoscaler"]
    if len(hpas) != 1:
        return [f"ingress: expected one HorizontalPodAutoscaler, found {len(hpas)}"]
    spec = hpas[0]["spec"]
    out = []
    if [m.get("resource", {}).get("name") for m in spec["metrics"]] != ["cpu"]:
        out.append("ingress: the HPA must scale on cpu alone")
    if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
        out.append("ingress: HPA bounds out of order")
    # Each leaving pod drains its spool during its grace period: one at a time.
    down = spec.get("behavior", {}).get("scaleDown", {}).get("policies", [])
    if not down or any(p["type"] != "Pods" or p["value"] != 1 for p in down):
        out.append("ingress: scale-down must remove one pod per period")
    return out


def workload_problems(docs: list[Doc]) -> list[str]:
    out = []
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        labels = workload["spec"]["selector"]["matchLabels"]
        found = autoscalers(docs, workload)
        if len(found) != 1:
            out.append(f"{name}: {len(found)} autoscalers (exactly one may own the replica count)")
            continue
        if "replicas" in workload["spec"]:
            out.append(f"{name}: sets replicas, which every apply would force over its autoscaler's choice")
        spec = found[0]["spec"]
        minimum = spec.get("minReplicaCount", 0) if found[0]["kind"] == "ScaledObject" else spec.get("minReplicas", 1)
        pdbs = [p for p in by_kind(docs, "PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == labels]
        if len(pdbs) != 1:
            out.append(f"{name}: expected one PodDisruptionBudget, found {len(pdbs)}")
        elif "minAvailable" in pdbs[0]["spec"] and pdbs[0]["spec"]["minAvailable"] >= minimum:
            out.append(f"{name}: PodDisruptionBudget minAvailable blocks every drain at {minimum} replicas")
        elif pdbs[0]["spec"].get("maxUnavailable", 1) < 1:
            out.append(f"{name}: PodDisruptionBudget maxUnavailable 0 blocks every drain")
        spreads = workload["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not any(s["topologyKey"] == ZONE and s["labelSelector"]["matchLabels"] == labels for s in spreads):
            out.append(f"{name}: no topology spread across zones")
    return out


def problems(docs: list[Doc]) -> list[str]:
    found = workload_problems(docs) + ingress_problems(docs)
    for service in CONSUMERS:
        found += scaledobject_problems(docs, service)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_scales_as_designed(built: Built, overlay: str) -> None:
    assert problems(built[overlay]) == []


def scaled(docs: list[Doc], service: str) -> Doc:
    return next(d for d in autoscalers(docs, workload_of(docs, service)) if d["kind"] == "ScaledObject")


def kafka_meta(docs: list[Doc], service: str) -> dict[str, str]:
    return dict(scaled(docs, service)["spec"]["triggers"][0]["metadata"])


def _set(service: str, path: str, value: Any) -> Callable[[list[Doc]], None]:
    def change(docs: list[Doc]) -> None:
        node = scaled(docs, service)["spec"]
        *parents, last = path.split("/")
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return change


def _meta(service: str, key: str, value: str | None) -> Callable[[list[Doc]], None]:
    def change(docs: list[Doc]) -> None:
        meta = scaled(docs, service)["spec"]["triggers"][0]["metadata"]
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    return change


def _drop(kind: str, name: str) -> Callable[[list[Doc]], None]:
    def change(docs: list[Doc]) -> None:
        docs.remove(one(docs, kind, name))
    return change


def _edit(kind: str, name: str, edit: Callable[[Doc], None]) -> Callable[[list[Doc]], None]:
    return lambda docs: edit(one(docs, kind, name))


BREAKAGES: dict[str, tuple[Callable[[list[Doc]], None], str]] = {
    "max above the partitions": (_set("dedup", "maxReplicaCount", 13), "voicecall-dedup: maxReplicaCount 13"),
    "max below the partitions": (_set("billing", "maxReplicaCount", 6), "voicecall-billing: maxReplicaCount 6"),
    "min zero": (_set("billing", "minReplicaCount", 0), "voicecall-billing: minReplicaCount 0"),
    "min unset (KEDA's default is 0)": (_set("dedup", "minReplicaCount", None), "minReplicaCount None"),
    "quick scale-down": (_set("dedup", "advanced/horizontalPodAutoscalerConfig/behavior/scaleDown/"
                                      "stabilizationWindowSeconds", 60), "scale-down"),
    "a stage without ScaledObject": (_drop("ScaledObject", "voicecall-recordings"),
                                     "voicecall-recordings: expected one ScaledObject"),
    "a stage without PDB": (_drop("PodDisruptionBudget", "voicecall-billing"),
                            "voicecall-billing: expected one PodDisruptionBudget, found 0"),
    "a PDB that blocks drains": (_edit("PodDisruptionBudget", "voicecall-dedup",
                                       lambda d: d["spec"].update(maxUnavailable=0)), "maxUnavailable 0"),
    "replicas back in a Deployment": (_edit("Deployment", "voicecall-dedup", lambda d: d["spec"].update(replicas=3)),
                                      "voicecall-dedup: sets replicas"),
    "an HPA beside the ScaledObject": (lambda docs: docs.append({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "voicecall-billing"},
                 "maxReplicas": 4}}), "voicecall-billing: 2 autoscalers"),
    "no zone spread": (_edit("Deployment", "voicecall-recordings", lambda d: d["spec"]["template"]["spec"].update(
        topologySpreadConstraints=[c for c in d["spec"]["template"]["spec"]["topologySpreadConstraints"]
                                   if c["topologyKey"] != ZONE])), "voicecall-recordings: no topology spread"),
    "without limitToPartitionsWithLag": (_meta("dedup", "limitToPartitionsWithLag", None), "limitToPartitionsWithLag"),
    "a misspelt parameter": (_meta("billing", "limitToPartitionWithLag", "true"), "unknown kafka scaler parameter"),
    "idle consumers allowed": (_meta("billing", "allowIdleConsumers", "true"), "allowIdleConsumers"),
    "the wrong topic": (_meta("dedup", "topic", "voicecall.fee.unique"), "voicecall-dedup: trigger topic"),
    "the wrong group": (_meta("recordings", "consumerGroup", "voicecall.billing"), "trigger consumerGroup"),
    "a short bootstrap name": (_meta("billing", "bootstrapServers", "voicecall-kafka-kafka-bootstrap:9093"),
                               "trigger bootstrapServers"),
    "plain SASL": (_meta("dedup", "sasl", "plaintext"), "trigger sasl"),
    "a zero threshold": (_meta("dedup", "lagThreshold", "0"), "lagThreshold '0'"),
    "latest offsets": (_meta("billing", "offsetResetPolicy", "latest"), "trigger offsetResetPolicy"),
    "another user's password": (_edit("TriggerAuthentication", "voicecall-billing", lambda d: d["spec"].update(
        secretTargetRef=[{**s, "name": "voicecall-operator"} if s["parameter"] == "password" else s
                         for s in d["spec"]["secretTargetRef"]])), "voicecall-billing: password"),
    "a user name not from the stage": (_edit("TriggerAuthentication", "voicecall-dedup", lambda d: d["spec"].update(
        env=[{**e, "containerName": "billing"} for e in d["spec"]["env"]])), "voicecall-dedup: username"),
    "no CA": (_edit("TriggerAuthentication", "voicecall-recordings", lambda d: d["spec"].update(
        secretTargetRef=[s for s in d["spec"]["secretTargetRef"] if s["parameter"] != "ca"])),
        "voicecall-recordings: ca None"),
    "ingress HPA on memory": (_edit("HorizontalPodAutoscaler", "voicecall-ingress", lambda d: d["spec"]["metrics"][0]
                                    ["resource"].update(name="memory")), "ingress: the HPA must scale on cpu"),
    "ingress scale-down by two": (_edit("HorizontalPodAutoscaler", "voicecall-ingress", lambda d: d["spec"]["behavior"]
                                        ["scaleDown"]["policies"][0].update(value=2)), "ingress: scale-down"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_overlay_is_caught(built: Built, breakage: str) -> None:
    docs = copy.deepcopy(built["prod"])
    change, expected = BREAKAGES[breakage]
    change(docs)
    found = problems(docs)
    assert any(expected in problem for problem in found), found


def test_keda_schemas_reject_what_the_api_server_would(built: Built) -> None:
    """The derived KEDA schemas are strict where the API server is: unknown fields, metadata values not strings."""
    docs = built["prod"]
    so = scaled(docs, "dedup")
    auth = one(docs, "TriggerAuthentication", "voicecall-dedup")
    validate_so = jsonschema.Draft202012Validator(load_schema("ScaledObject"))
    validate_auth = jsonschema.Draft202012Validator(load_schema("TriggerAuthentication"))
    assert validate_so.is_valid(so) and validate_auth.is_valid(auth)

    def changed(doc: Doc, edit: Callable[[Doc], None]) -> Doc:
        doc = copy.deepcopy(doc)
        edit(doc)
        return doc

    bad_scaled = [
        changed(so, lambda d: d["spec"].update(minReplicas=3)),  # the HPA's spelling
        changed(so, lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=570000)),  # unquoted
        changed(so, lambda d: d["spec"]["triggers"][0]["metadata"].update(limitToPartitionsWithLag=True)),
        changed(so, lambda d: d["spec"].pop("triggers")),
        changed(so, lambda d: d["spec"]["scaleTargetRef"].pop("name")),
        changed(so, lambda d: d["spec"].update(maxReplicaCount="12")),
        changed(so, lambda d: d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
                ["policies"][0].pop("periodSeconds")),
        changed(so, lambda d: d.update(kind="ScaledJob")),
    ]
    for bad in bad_scaled:
        assert not validate_so.is_valid(bad), bad
    bad_auths = [
        changed(auth, lambda d: d["spec"]["secretTargetRef"][0].pop("key")),
        changed(auth, lambda d: d["spec"].update(secretTargetRefs=d["spec"].pop("secretTargetRef"))),
        changed(auth, lambda d: d["spec"]["env"][0].pop("parameter")),
    ]
    for bad in bad_auths:
        assert not validate_auth.is_valid(bad), bad


def test_keda_schemas_say_where_they_come_from() -> None:
    for kind in ("ScaledObject", "TriggerAuthentication"):
        schema = load_schema(kind)
        assert "cloudcoil-models-keda" in schema["$comment"] and "derive_keda.py" in schema["$comment"], kind
        assert schema["properties"]["apiVersion"] == {"const": "keda.sh/v1alpha1"}
        text = json.dumps(schema)
        assert '"additionalProperties": false' in text


DERIVATION = re.compile(r"^(?:(?P<mib>[\d.]+) MiB/s / (?P<size>\d+) MiB per recording = )?(?P<rate>[\d,.]+) records/s "
                        r"\(bench/RESULTS\.md[^)]*\) x (?P<headroom>[\d.]+) headroom x (?P<seconds>\d+) s, "
                        r"kept to 2 significant figures$")


def two_significant_figures_down(value: float) -> int:
    magnitude = 10 ** (len(str(int(value))) - 2)
    return math.floor(value / magnitude) * magnitude


@pytest.mark.parametrize("service", CONSUMERS)
def test_lag_threshold_follows_the_measured_throughput(built: Built, service: str) -> None:
    """lagThreshold = what one replica clears in the stated time at a derated benchmark figure that RESULTS.md has."""
    results = RESULTS.read_text()
    for overlay in OVERLAYS:
        so = scaled(built[overlay], service)
        derivation = so["metadata"]["annotations"]["voicecall/lag-threshold-derivation"]
        match = DERIVATION.match(derivation)
        assert match, derivation
        rate = float(match["rate"].replace(",", ""))
        if match["mib"]:
            assert f"{match['mib']} MiB/s" in results
            assert rate == float(match["mib"]) / int(match["size"])
        else:
            assert f"{service} {match['rate']}" in results.replace("**", "").lower(), match["rate"]
        expected = two_significant_figures_down(rate * float(match["headroom"]) * int(match["seconds"]))
        assert int(kafka_meta(built[overlay], service)["lagThreshold"]) == expected
