"""docs/architecture.md stays true: every path it names exists, every package under services/voicecall/ is named,
the README links it, and it stays short (two pages)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "services" / "voicecall"
# Paths that start so are from the repository's root; the rest from PACKAGE.
ROOT_DIRS = ("services/", "tests/", "schemas/", "bench/", "docs/")
PATH = re.compile(r"`([A-Za-z0-9_.*/-]+(?:/|\.py|\.md|\.json|\.yaml))`")  # `<placeholders>` are not paths


def named_paths() -> list[str]:
    return PATH.findall(DOC.read_text(encoding="utf-8"))


def where(path: str) -> list[Path]:
    base = ROOT if path.startswith(ROOT_DIRS) else PACKAGE
    return sorted(base.glob(path.rstrip("/"))) if "*" in path else [base / path]


def test_every_path_it_names_exists() -> None:
    paths = named_paths()
    assert len(paths) > 50  # the pattern still finds the doc's paths
    missing = [path for path in paths
               if not any(p.is_dir() if path.endswith("/") else p.is_file() for p in where(path))]
    assert missing == []


def test_every_package_is_named() -> None:
    named = {path.rstrip("/") for path in named_paths() if path.endswith("/") and not path.startswith(ROOT_DIRS)}
    packages = {init.parent.relative_to(PACKAGE).as_posix() for init in PACKAGE.rglob("__init__.py")} - {"."}
    assert sorted(packages - named) == []


def test_the_readme_links_it_and_it_stays_short() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(DOC.read_text(encoding="utf-8").split()) <= 1100  # about two printed pages
