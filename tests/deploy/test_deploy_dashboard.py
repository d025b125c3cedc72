"""The Grafana dashboard: generated from deploy/k8s/monitoring/dashboard.py (the committed JSON is what it makes),
shipped in the prod overlay as a ConfigMap, and every panel queries metrics and labels the services export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import K8S, one
from promql_helpers import expr_labels, metric_names, problems, promtool

MONITORING = K8S / "monitoring"
JSON_FILE = MONITORING / "voicecall-pipeline.json"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("voicecall_dashboard", MONITORING / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets") or ()]


def test_the_committed_json_is_what_the_code_makes() -> None:
    assert JSON_FILE.read_text(encoding="utf-8") == generator().render(), "run `make dashboard`"


def test_every_panel_queries_what_the_services_export() -> None:
    board = json.loads(JSON_FILE.read_text(encoding="utf-8"))
    used = [(title, metric, labels) for title, expr in queries(board) for metric, labels in expr_labels(expr)]
    named = {metric for _, expr in queries(board) for metric in metric_names(expr)}
    assert named <= {metric for _, metric, _ in used}, "every metric a panel names is checked"
    assert len(used) >= 20
    assert not problems(used)


def test_the_check_catches_a_panel_with_an_invented_label_or_metric(tmp_path: Path) -> None:
    bad = [("Lag", metric, labels) for metric, labels in
           expr_labels("sum by (consumer) (voicecall_stage_consumer_lag)")]
    bad += [("Age", metric, labels) for metric, labels in
            expr_labels('histogram_quantile(0.99, sum by (stage, le) (rate(voicecall_event_ages_bucket[5m])))')]
    assert problems(bad) == [
        "Lag: voicecall_stage_consumer_lag has no label ['consumer'] (it has ['partition', 'stage'])",
        "Age: voicecall_event_ages_bucket is not exported"]


def test_the_dashboard_covers_what_an_operator_opens_it_for() -> None:
    board = json.loads(JSON_FILE.read_text(encoding="utf-8"))
    text = " ".join(expr for _, expr in queries(board))
    for metric in ("voicecall_ingress_requests_total", "voicecall_ingress_durable_seconds_bucket",
                   "voicecall_ingress_spool_bytes", "voicecall_stage_records_in_total",
                   "voicecall_stage_consumer_lag", "voicecall_stage_transaction_seconds_bucket",
                   "voicecall_stage_transaction_aborts_total", "voicecall_dedup_duplicates_total",
                   "voicecall_dedup_conflicts_total", "voicecall_billing_minutes_total",
                   "voicecall_recordings_downloads_total", "voicecall_event_age_seconds_bucket",
                   "voicecall_slo_billing_seconds", "voicecall_ingress_deadletter_total"):
        assert metric in text, metric
    assert board["panels"][0]["type"] == "row" and board["panels"][0]["title"] == "Is billing late?"


def test_prod_ships_the_dashboard_as_a_configmap(built: dict[str, list[dict[str, Any]]]) -> None:
    config_map = one(built["prod"], "ConfigMap", "voicecall-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["voicecall-pipeline.json"]) == json.loads(JSON_FILE.read_text())


def test_every_panel_query_is_valid_promql(promtool_path: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's ``$__rate_interval`` stands for a range)."""
    board = json.loads(JSON_FILE.read_text(encoding="utf-8"))
    rules = [{"record": f"dashboard:query_{index}", "expr": expr.replace("$__rate_interval", "5m")}
             for index, (_, expr) in enumerate(queries(board))]
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool(promtool_path, "check", "rules", "queries.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout + out.stderr
