"""The PrometheusRule: valid for promtool, unit-tested with promtool, about metrics the services really expose."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, ROOT, one, workloads
from promql_helpers import declared_labels, expr_labels, metric_names, problems, promtool, selector_labels

RULE = K8S / "base" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = K8S / "monitoring-tests" / "alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"


def rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The rule's spec as a plain Prometheus rule file, next to a copy of the promtool unit tests."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def test_promtool_check_rules(promtool_path: str, rules_dir: Path) -> None:
    out = promtool(promtool_path, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout + out.stderr


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
              for case in test.get("alert_rule_test", ()) if case.get("exp_alerts")}
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
                   "transaction_aborts", "event_age_seconds", "slo_billing_seconds"):
        assert needle in exprs, needle


def test_every_voicecall_metric_in_the_rules_is_exposed_by_a_service() -> None:
    declared = set(declared_labels())
    used = metric_names(" ".join(rule["expr"] for rule in rules()))
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


def test_rules_and_their_unit_tests_use_the_labels_the_services_export() -> None:
    """A rule grouping or filtering by a label the metric does not have never fires; a unit test feeding a series
    with invented labels proves nothing. Both are checked against the services' real label names."""
    used: list[tuple[str, str, set[str]]] = []
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        used += [(name, metric, labels) for metric, labels in expr_labels(rule["expr"])]
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in test["input_series"]:
            used += [("alerts.test.yaml", metric, labels) for metric, labels in selector_labels(series["series"])]
    assert any(where == "alerts.test.yaml" for where, _, _ in used) and len(used) > 10
    assert any(metric == "voicecall_event_age_seconds_bucket" and "le" in labels for _, metric, labels in used)
    assert not problems(used)


def test_the_label_check_catches_an_invented_label() -> None:
    assert problems([("here", "voicecall_recordings_failed_total", {"cause", "pod"}),
                     ("there", "voicecall_event_age_seconds_bucket", {"stage", "le"}),
                     ("elsewhere", "voicecall_nothing_total", set())]) == [
        "here: voicecall_recordings_failed_total has no label ['cause'] (it has ['reason'])",
        "elsewhere: voicecall_nothing_total is not exported"]
