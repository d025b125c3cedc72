"""NetworkPolicies: deny by default; the ingress port in; DNS, Kafka and (recordings only) HTTPS out."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_helpers import OVERLAYS, by_kind, workloads


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return bool(wanted.items() <= labels.items())


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = built[overlay]
    policies = by_kind(docs, "NetworkPolicy")
    for workload in workloads(docs):
        labels = pod_labels(workload)
        component = labels["app.kubernetes.io/component"]
        mine = [p for p in policies if selects(p, labels)]
        deny = [p for p in mine if not p["spec"].get("ingress") and not p["spec"].get("egress")]
        assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, component

        ingress_rules = [r for p in mine for r in p["spec"].get("ingress", [])]
        open_ports = {port["port"] for r in ingress_rules if "from" not in r for port in r["ports"]}
        assert open_ports == ({"http"} if component == "ingress" else set()), component
        for rule in ingress_rules:
            assert rule.get("ports"), "never a whole pod open"

        egress = [r for p in mine for r in p["spec"].get("egress", [])]
        ports = {(port["port"], port["protocol"]) for r in egress for port in r["ports"]}
        assert (53, "UDP") in ports and (9093, "TCP") in ports, component
        assert ((443, "TCP") in ports) == (component == "recordings"), component
        for rule in egress:
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(peer["ipBlock"]["except"]), \
                        "no private or metadata addresses"
