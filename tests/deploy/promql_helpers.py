"""What the services export (metric names and label names, from the live registry) and what PromQL uses: the alert
rules and the dashboard are both checked against it."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

# Labels Prometheus adds to every scraped series (target labels and the PodMonitor's relabelings).
TARGET_LABELS = {"pod", "namespace", "service", "instance", "job", "container", "endpoint"}
METRIC_MODULES = ("voicecall.ingress.metrics", "voicecall.apps", "voicecall.runtime.stage",
                  "voicecall.recordings.metrics", "voicecall.dedup.metrics", "voicecall.billing.metrics",
                  "voicecall.calls.metrics")


def promtool(promtool_path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def declared_labels() -> dict[str, set[str]]:
    """Every voicecall_* series name the services register → its label names (``le`` on a histogram's buckets)."""
    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    # prometheus_client's collectors keep ``_labelnames``; the project's Tally keeps ``labelnames``.
    declared = {name: set(getattr(collector, "_labelnames", None) or getattr(collector, "labelnames", ()) or ())
                for name, collector in REGISTRY._names_to_collectors.items() if name.startswith("voicecall_")}
    for name, labels in declared.items():
        if name.endswith("_bucket"):
            labels.add("le")
    return declared


def selector_labels(text: str) -> list[tuple[str, set[str]]]:
    """(metric, label names) of every ``voicecall_x{a="…", b!~"…"}`` selector in a PromQL text or series line."""
    found = []
    for metric, body in re.findall(r"\b(voicecall_[a-z0-9_]+)\{([^}]*)\}", text):
        found.append((metric, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))))
    return found


def expr_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names) a PromQL expression relies on: its selectors, ``by (…)`` over a metric, and every
    other metric it names."""
    used = selector_labels(expr)
    for labels, metric in re.findall(r"by \(([^)]*)\) \((?:increase|rate|irate)?\(?(voicecall_[a-z0-9_]+)", expr):
        used.append((metric, {label.strip() for label in labels.split(",") if label.strip()}))
    named = {metric for metric, _ in used}
    used += [(metric, set()) for metric in sorted(metric_names(expr) - named)]  # the bare ones: exported at all?
    return used


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(voicecall_[a-z0-9_]+)", expr))


def problems(used: list[tuple[str, str, set[str]]]) -> list[str]:
    """What of ``(where, metric, labels)`` no service exports."""
    declared = declared_labels()
    found = []
    for where, metric, labels in used:
        if metric not in declared:
            found.append(f"{where}: {metric} is not exported")
            continue
        unknown = labels - declared[metric] - TARGET_LABELS
        if unknown:
            found.append(f"{where}: {metric} has no label {sorted(unknown)} (it has {sorted(declared[metric])})")
    return found
