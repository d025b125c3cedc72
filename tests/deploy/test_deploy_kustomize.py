"""Both overlays build offline and what they build is what a platform team can apply."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_helpers import OVERLAYS, SCHEMAS, by_kind, config_env, load_schema, one, replica_bounds, workloads

from voicecall import topics
from voicecall.runtime import config
from voicecall.topics import manifests

Built = dict[str, list[dict[str, Any]]]
CRD_GROUPS = ("kafka.strimzi.io/", "monitoring.coreos.com/", "keda.sh/")
K8S_VERSIONS = ("1.28.0", "1.37.0")  # the oldest and newest kubernetes-validate knows


def quantity(value: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if value.endswith(unit):
            return int(value.removesuffix(unit)) * factor
    return int(value)


def is_crd(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).startswith(CRD_GROUPS)


def kubernetes_validate(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "built.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    versions = [arg for v in K8S_VERSIONS for arg in ("-k", v)]
    cli = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(cli), "--strict", *versions, str(path)], capture_output=True, text=True, timeout=120)


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def workload_of(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    found = [w for w in workloads(docs) if container(w)["args"][0] == service]
    assert len(found) == 1, f"exactly one workload runs `voicecall {service}`"
    return found[0]


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_into_one_namespace(built: Built, overlay: str) -> None:
    docs = built[overlay]
    assert len(docs) > 20
    expected = {"dev": "voicecall-dev", "prod": "voicecall"}[overlay]
    assert {d["metadata"].get("namespace") for d in docs} == {expected}
    assert not by_kind(docs, "Namespace"), "the namespace belongs to the platform team"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_validate_strict_passes(built: Built, overlay: str, tmp_path: Path) -> None:
    core = [d for d in built[overlay] if not is_crd(d)]
    out = kubernetes_validate(core, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Couldn't find schema" not in out.stdout + out.stderr, "every built core resource must be checked"
    assert out.stdout.count(" passed ") == len(core) * len(K8S_VERSIONS)


def test_strict_validation_catches_a_misspelt_field(built: Built, tmp_path: Path) -> None:
    broken = copy.deepcopy(workload_of(built["prod"], "dedup"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    out = kubernetes_validate([broken], tmp_path)
    assert out.returncode != 0
    assert "readOnlyRootFileSystem" in out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_the_project_schemas(built: Built, overlay: str) -> None:
    crds = [d for d in built[overlay] if is_crd(d)]
    assert {d["kind"] for d in crds} == {"KafkaTopic", "KafkaUser", "PodMonitor", "PrometheusRule", "ScaledObject",
                                         "TriggerAuthentication"}
    for doc in crds:
        schema = load_schema(doc["kind"])
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def test_schemas_are_valid_and_reject_what_strimzi_would() -> None:
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        jsonschema.Draft202012Validator.check_schema(load_schema(path.name.split(".")[0]))
    settings = config.load(topics.TopicSettings)
    topic, user = manifests.kafka_topics(settings)[0], manifests.kafka_users(settings)[1]
    validate_topic = jsonschema.Draft202012Validator(load_schema("KafkaTopic"))
    validate_user = jsonschema.Draft202012Validator(load_schema("KafkaUser"))
    assert validate_topic.is_valid(topic) and validate_user.is_valid(user)
    bad_topics = [
        {**topic, "spec": {**topic["spec"], "partitions": 0}},
        {**topic, "spec": {**topic["spec"], "replica": 3}},
        {**topic, "spec": {**topic["spec"], "config": {"retention.ms": "two weeks"}}},
        {**topic, "metadata": {"name": "Upper_Case"}},
        {**topic, "metadata": {**topic["metadata"], "labels": {}}},  # no strimzi.io/cluster: the operator ignores it
    ]
    for bad in bad_topics:
        assert not validate_topic.is_valid(bad), bad
    acl = user["spec"]["authorization"]["acls"][0]
    bad_acls = [
        {**acl, "operations": ["Reed"]},
        {**acl, "resource": {"type": "cluster", "name": "x", "patternType": "literal"}},
        {**acl, "resource": {"type": "topic"}},
        {**acl, "resource": {**acl["resource"], "patternType": "prefixed"}},
    ]
    for bad_acl in bad_acls:
        bad = copy.deepcopy(user)
        bad["spec"]["authorization"]["acls"] = [bad_acl]
        assert not validate_user.is_valid(bad), bad_acl


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_workload_and_the_ingress_keeps_its_spool(built: Built, overlay: str) -> None:
    docs = built[overlay]
    for service in manifests.WORKLOADS:
        workload = workload_of(docs, service)
        expected_kind = "StatefulSet" if service == "ingress" else "Deployment"
        assert workload["kind"] == expected_kind, service
    ingress = workload_of(docs, "ingress")
    spool_dir = config_env(docs)["VOICECALL_INGRESS_SPOOL_DIR"]
    claims = {c["metadata"]["name"] for c in ingress["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container(ingress)["volumeMounts"]}
    assert mounts.get(spool_dir) in claims, "the spool directory is on the pod's own persistent volume"
    assert ingress["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    volume = next(c for c in ingress["spec"]["volumeClaimTemplates"] if c["metadata"]["name"] == mounts[spool_dir])
    spool_max = config.parse_size(config_env(docs)["VOICECALL_INGRESS_SPOOL_MAX_BYTES"])
    assert spool_max < quantity(volume["spec"]["resources"]["requests"]["storage"]), "the spool limit fits its volume"
    pod = ingress["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60, "the spool drains during the grace period"
    assert container(ingress)["lifecycle"]["preStop"]
    hpa = one(docs, "HorizontalPodAutoscaler", "voicecall-ingress")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": ingress["metadata"]["name"]}
    assert "replicas" not in ingress["spec"], "the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    service = one(docs, "Service", "voicecall-ingress")
    assert service["spec"]["selector"] == ingress["spec"]["selector"]["matchLabels"]
    paths = [p for rule in one(docs, "Ingress", "voicecall-ingress")["spec"]["rules"]
             for p in rule["http"]["paths"]]
    assert [p["path"] for p in paths] == ["/notify"], "only the notify paths are published"
    assert {p["backend"]["service"]["name"] for p in paths} == {"voicecall-ingress"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_has_a_kafkatopic_under_the_configured_prefix(built: Built, overlay: str) -> None:
    docs = built[overlay]
    prefix = config_env(docs)["VOICECALL_TOPIC_PREFIX"]
    names = sorted(d["spec"]["topicName"] for d in by_kind(docs, "KafkaTopic"))
    assert names == sorted(prefix + spec.suffix for spec in topics.TOPICS)
    for doc in by_kind(docs, "KafkaTopic"):
        assert 1 <= int(doc["spec"]["config"]["min.insync.replicas"]) <= doc["spec"]["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_sized_probed_and_spread(built: Built, overlay: str) -> None:
    docs = built[overlay]
    accounts = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceAccount")}
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        c = container(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 1000, name
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}, name
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
        assert "memory" in c["resources"]["limits"], name
        assert c["image"].startswith("voicecall-pipeline:"), name
        ports = {p["name"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert {c[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} <= ports
        keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, name
        for spread in pod["topologySpreadConstraints"]:
            assert spread["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"], name
        assert pod["serviceAccountName"] in accounts, name
        assert pod["automountServiceAccountToken"] is False, name
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, "a writable /tmp on a read-only root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_references_never_values(built: Built, overlay: str) -> None:
    docs = built[overlay]
    assert not by_kind(docs, "Secret"), "no Secret object in git: they are created out of band"
    for key in config_env(docs):
        assert not any(word in key for word in ("SECRET", "PASSWORD", "APP_KEY")), key
    users = {d["metadata"]["name"] for d in by_kind(docs, "KafkaUser")}
    for service in manifests.WORKLOADS:
        env = env_of(workload_of(docs, service))
        for name, item in env.items():
            if any(word in name for word in ("SECRET", "PASSWORD", "APP_KEY", "ACCESS_KEY")):
                assert "value" not in item and "secretKeyRef" in item["valueFrom"], (service, name)
        # Strimzi's User Operator writes the KafkaUser's password into a Secret of the same name.
        user = env["VOICECALL_KAFKA_SASL_USERNAME"]["value"]
        assert user == manifests.user_name(service) and user in users
        assert env["VOICECALL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user,
                                                                                       "key": "password"}
    recordings = env_of(workload_of(docs, "recordings"))
    assert {"VOICECALL_HUAWEI_APP_KEY", "VOICECALL_HUAWEI_APP_SECRET", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY"} <= set(recordings)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_values_are_valid_settings(built: Built, overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = config_env(built[overlay])
    for key, value in env.items():
        assert key.startswith("VOICECALL_"), key
        monkeypatch.setenv(key, value)
    common = config.CommonSettings()
    assert common.kafka_security_protocol == "SASL_SSL" and common.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert str(common.kafka_ssl_cafile).startswith("/etc/voicecall/kafka-ca/")
    from voicecall.recordings.config import RecordingsSettings

    assert RecordingsSettings().recordings_store.startswith("s3://")
    for workload in workloads(built[overlay]):
        mounts = {m["mountPath"] for m in container(workload)["volumeMounts"]}
        assert str(Path(str(common.kafka_ssl_cafile)).parent) in mounts, workload["metadata"]["name"]


def test_prod_is_bigger_than_dev(built: Built) -> None:
    for service in manifests.WORKLOADS:
        prod_min, prod_max = replica_bounds(built["prod"], workload_of(built["prod"], service))
        dev_min, dev_max = replica_bounds(built["dev"], workload_of(built["dev"], service))
        assert prod_min > dev_min and prod_max > dev_max, service
    prod_topics = {d["spec"]["topicName"]: d["spec"] for d in by_kind(built["prod"], "KafkaTopic")}
    assert {s["replicas"] for s in prod_topics.values()} == {3}
    assert {s["replicas"] for s in (d["spec"] for d in by_kind(built["dev"], "KafkaTopic"))} == {1}
    assert one(built["prod"], "Ingress", "voicecall-ingress")["spec"]["tls"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replay_reset_tells_how_to_stop_a_workload_that_exists(built: Built, overlay: str) -> None:
    """`voicecall replay reset` refuses while a service runs and prints the kubectl command that stops it."""
    from voicecall.replay import reset as replay_reset

    docs = built[overlay]
    member = replay_reset.Member("m", "c", "h")
    for service in replay_reset.INPUTS:
        text = replay_reset.refusal(service, "g", [member])
        kind, name = re.search(r"kubectl scale (\w+)/([\w.-]+) --replicas=0", text).groups()  # type: ignore[union-attr]
        workload = workload_of(docs, service)
        assert (kind, name) == (workload["kind"].lower(), workload["metadata"]["name"]), service
        # KEDA would scale a Deployment scaled to 0 back to its minimum: the refusal pauses the ScaledObject.
        paused = re.search(r"kubectl annotate scaledobject/([\w.-]+) autoscaling\.keda\.sh/paused-replicas=0", text)
        assert paused, text
        scaled = one(docs, "ScaledObject", paused.group(1))
        assert scaled["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"], service
        # ...and the topic it rewinds is the one the workload consumes.
        assert replay_reset.INPUTS[service] in {a for acc in manifests.SERVICES if acc.service == service
                                               for a in acc.reads}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_apps_file_is_a_secret_volume_of_the_ingress_and_recordings(built: Built, overlay: str) -> None:
    docs = built[overlay]
    for service in ("ingress", "recordings"):
        workload = workload_of(docs, service)
        path = Path(env_of(workload)["VOICECALL_HUAWEI_APPS_FILE"]["value"])
        mounts = {m["mountPath"]: m for m in container(workload)["volumeMounts"]}
        mount = mounts[str(path.parent)]
        assert mount["readOnly"] and "subPath" not in mount, "a subPath mount never sees the Secret change"
        volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "voicecall-huawei-apps"
        assert [item["path"] for item in volume["secret"]["items"]] == [path.name]


def test_prod_runs_log_and_the_enforce_component_switches_it(built: Built, tmp_path: Path) -> None:
    from deploy_helpers import K8S, kustomize_command

    env = config_env(built["prod"])
    assert env["VOICECALL_INGRESS_SIGNATURE"] == "log"
    assert env["VOICECALL_INGRESS_PUBLIC_URL"].startswith("https://")
    host = one(built["prod"], "Ingress", "voicecall-ingress")["spec"]["rules"][0]["host"]
    assert env["VOICECALL_INGRESS_PUBLIC_URL"] == f"https://{host}", "the URL the platform signs is the public one"
    overlay = tmp_path / "enforcing"
    overlay.mkdir()
    prod, component = (Path(os.path.relpath(K8S / part, overlay)) for part in ("overlays/prod",
                                                                                 "components/signature-enforce"))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(prod)], "components": [str(component)]}))
    out = subprocess.run([*kustomize_command(), str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    switched = config_env(docs)
    assert switched["VOICECALL_INGRESS_SIGNATURE"] == "enforce"
    assert {k: v for k, v in switched.items() if k != "VOICECALL_INGRESS_SIGNATURE"} == \
        {k: v for k, v in env.items() if k != "VOICECALL_INGRESS_SIGNATURE"}
    # the ConfigMap's name changes with its content, so applying it rolls the ingress pods
    def config_names(built_docs: list[dict[str, Any]]) -> set[str]:
        return {d["metadata"]["name"] for d in by_kind(built_docs, "ConfigMap")
                if d["metadata"]["name"].startswith("voicecall-config-")}

    assert config_names(docs) and config_names(docs).isdisjoint(config_names(built["prod"]))
