"""The Dockerfile (no docker engine in CI: checked by hadolint and by reading it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deploy_support import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    result: list[list[str]] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            result.append([])
        if result and line and not line.startswith("#"):
            result[-1].append(line)
    return result


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_multi_stage_non_root_one_entrypoint() -> None:
    build, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert "slim" in DOCKERFILE.read_text().split("PYTHON_IMAGE=")[1].split()[0]
    assert any("pip install" in line for line in build)
    assert not any("pip install" in line for line in final), "only the built virtualenv reaches the final stage"
    copies = [line for line in final if line.startswith("COPY")]
    assert copies and all("--from=build" in line for line in copies), "no sources in the final stage"
    user = [line for line in final if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert user[-1].split()[1].split(":")[0].isdigit(), "numeric, so runAsNonRoot can check it"
    assert 'ENTRYPOINT ["voicecall"]' in final


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*", "everything is excluded by default"
    assert {"!pyproject.toml", "!README.md", "!services/", "!schemas/"} <= set(lines)
