"""The PrometheusRule: valid for promtool, unit-tested with promtool, about metrics the services really expose."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, ROOT, one, workloads

RULE = K8S / "base" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = K8S / "monitoring-tests" / "alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"


def alerts() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The rule's spec as a plain Prometheus rule file, next to a copy of the promtool unit tests."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def promtool(promtool_path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(promtool_path: str, rules_dir: Path) -> None:
    out = promtool(promtool_path, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout + out.stderr


def test_promtool_rule_unit_tests(promtool_path: str, rules_dir: Path) -> None:
    out = promtool(promtool_path, "test", "rules", RULE_TESTS.name, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_can_fail(promtool_path: str, rules_dir: Path) -> None:
    """A rule made blind (threshold out of reach) must break its unit test: the tests check real behaviour."""
    text = (rules_dir / "rules.yaml").read_text().replace("> 10000", "> 1e12")
    (rules_dir / "rules.yaml").write_text(text)
    out = promtool(promtool_path, "test", "rules", RULE_TESTS.name, cwd=rules_dir)
    assert out.returncode != 0
    assert "VoicecallConsumerLagHigh" in out.stdout + out.stderr


def test_every_alert_is_unit_tested_labelled_and_has_a_runbook() -> None:
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    headings = {m.group(1) for m in re.finditer(r"^#{2,4} (Voicecall\w+)", OPERATIONS.read_text(), re.M)}
    for alert in alerts():
        name = alert["alert"]
        assert name in tested, f"{name} has no promtool case that fires it"
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name in headings, f"docs/operations.md has no runbook entry for {name}"


def test_alerts_cover_what_the_issue_asks() -> None:
    exprs = " ".join(a["expr"] for a in alerts())
    for needle in ("consumergroup_lag", "spool", "deadletter", "recordings_failed", "ingress_requests_total",
                   "transaction_aborts"):
        assert needle in exprs, needle


def test_every_voicecall_metric_in_the_rules_is_exposed_by_a_service() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "services" / "voicecall").rglob("*.py"))
    declared = set(re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(voicecall_\w+)"', sources))
    declared |= {name.removesuffix("_total") + "_total" for name in declared}
    used = set(re.findall(r"\b(voicecall_[a-z0-9_]+)", " ".join(a["expr"] for a in alerts())))
    assert used, "the rules use the services' metrics"
    missing = sorted(name for name in used if name not in declared)
    assert not missing, f"metrics no service declares: {missing}"


def test_podmonitor_scrapes_ports_the_workloads_declare(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["prod"]
    monitor = one(docs, "PodMonitor", "voicecall")
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        declared = {p["name"] for p in workload["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert declared & ports, f"{workload['metadata']['name']} is not scraped"
        relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
        assert relabel["targetLabel"] == "service" and "component" in relabel["sourceLabels"][0]


# Labels Prometheus adds to every scraped series (target labels and the PodMonitor's relabelings).
TARGET_LABELS = {"pod", "namespace", "service", "instance", "job", "container", "endpoint"}


def declared_labels() -> dict[str, set[str]]:
    """Every voicecall_* series name the services register → its label names, from the live registry."""
    import importlib

    from prometheus_client import REGISTRY

    for module in ("voicecall.ingress.metrics", "voicecall.runtime.stage", "voicecall.recordings.metrics",
                   "voicecall.dedup.metrics", "voicecall.billing.metrics", "voicecall.calls.metrics"):
        importlib.import_module(module)
    return {name: set(getattr(collector, "_labelnames", ()) or ())
            for name, collector in REGISTRY._names_to_collectors.items() if name.startswith("voicecall_")}


def selector_labels(text: str) -> list[tuple[str, set[str]]]:
    """(metric, label names) of every ``voicecall_x{a="…", b!~"…"}`` selector in a PromQL text or series line."""
    found = []
    for metric, body in re.findall(r"\b(voicecall_[a-z0-9_]+)\{([^}]*)\}", text):
        found.append((metric, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))))
    return found


def test_rules_and_their_unit_tests_use_the_labels_the_services_export() -> None:
    """A rule grouping or filtering by a label the metric does not have never fires; a unit test feeding a series
    with invented labels proves nothing. Both are checked against the services' real label names."""
    declared = declared_labels()
    used: list[tuple[str, str, set[str]]] = []
    for alert in alerts():
        expr = alert["expr"]
        used += [(alert["alert"], metric, labels) for metric, labels in selector_labels(expr)]
        for labels, metric in re.findall(r"by \(([^)]*)\) \((?:increase|rate)?\(?(voicecall_[a-z0-9_]+)", expr):
            used.append((alert["alert"], metric, {label.strip() for label in labels.split(",")}))
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in test["input_series"]:
            used += [("alerts.test.yaml", metric, labels) for metric, labels in selector_labels(series["series"])]
    assert any(where == "alerts.test.yaml" for where, _, _ in used) and len(used) > 10
    for where, metric, labels in used:
        assert metric in declared, f"{where}: {metric} is not exported"
        unknown = labels - declared[metric] - TARGET_LABELS
        assert not unknown, f"{where}: {metric} has no label {sorted(unknown)} (it has {sorted(declared[metric])})"


def test_the_label_check_catches_an_invented_label() -> None:
    declared = declared_labels()
    (metric, labels), = selector_labels('voicecall_recordings_failed_total{cause="x",pod="p"}')
    assert labels - declared[metric] - TARGET_LABELS == {"cause"}
