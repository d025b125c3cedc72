"""The Dockerfile, read (hadolint and its stages); test_deploy_container.py builds and runs the image."""

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
    build = next(stage for stage in stages() if stage[0].endswith(" AS build"))
    final = stages()[-1]
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


def test_the_installed_package_carries_the_schemas_the_ingress_reads(tmp_path: Path) -> None:
    """The image installs the wheel (no checkout around it): the ingress must find its schemas inside the package.

    Without docker (and without a network to build a wheel), lay out what the wheel installs — the package's .py
    files and its package-data globs from pyproject.toml, symlinks resolved as a wheel stores them — in a bare
    site-packages, and run the build stage's own smoke check against it."""
    import fnmatch
    import os
    import re
    import shutil
    import tomllib

    text = DOCKERFILE.read_text()
    check = re.search(r'/opt/voicecall/bin/python -c "(from voicecall\.ingress\.parse import [^"]+)"', text)
    assert check, "the build stage smoke-checks the installed ingress's schemas"
    assert "COPY schemas ./schemas" in text, "services/voicecall/schemas links to ../../schemas: both are needed"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["voicecall"]
    package = ROOT / "services" / "voicecall"
    site = tmp_path / "site-packages"
    shipped = 0
    files = [Path(top) / name for top, _, names in os.walk(package, followlinks=True) for name in names]
    for path in files:
        relative = path.relative_to(package).as_posix()
        if "__pycache__" in relative:
            continue
        if path.suffix == ".py" or any(fnmatch.fnmatch(relative, pattern) for pattern in globs):
            (site / "voicecall" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, site / "voicecall" / relative)  # follows the schemas link
            shipped += relative.startswith("schemas/")
    for schema in (ROOT / "schemas").iterdir():
        assert (site / "voicecall" / "schemas" / schema.name).is_file() or schema.name == "README.md", \
            f"schemas/{schema.name} is not package data (pyproject.toml [tool.setuptools.package-data])"
    assert shipped >= 10

    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}

    def run(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                              cwd=tmp_path)

    where = run("import voicecall; print(voicecall.__file__)")
    assert where.stdout.startswith(str(site)), "the laid-out copy, not the checkout, is imported"
    out = run(check.group(1))
    assert out.returncode == 0, out.stderr
    (site / "voicecall" / "schemas" / "fee_push.schema.json").unlink()
    assert run(check.group(1)).returncode != 0, "the smoke check notices a missing schema"
