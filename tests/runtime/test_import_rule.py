"""The arrows between packages point one way: ``runtime`` imports nothing else of the project, nothing imports a
service package except the ``voicecall`` command (``voicecall/cli.py`` and its table ``voicecall/commands.py``),
and no two modules import each other (directly or around a loop).

Every module under services/voicecall/ is parsed (not imported): ``import``/``from … import`` statements anywhere
in it and, for the first two rules, string constants that name a module of the project exactly (what
``importlib.import_module`` gets). A module named only by such a string is loaded when it runs, not when the
naming module is imported, so those names are not import cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import voicecall

ROOT = Path(voicecall.__file__).resolve().parent
SHARED = ("runtime", "topics")  # every other subpackage is a service
COMMAND = ("voicecall.cli", "voicecall.commands")  # the console script and its table of command modules


def module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, path): path for path in sorted(root.rglob("*.py"))}


def references(name: str, path: Path, known: set[str], *, by_name: bool = True) -> Iterator[str]:
    """The project modules ``name`` imports (``known``: every module and package name of the project), and with
    ``by_name`` the ones it names in a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.partition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.partition(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.partition(".")[0] != top:
                continue
            for alias in node.names:  # ``from voicecall import topics`` names a module, not just the package
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
        elif by_name and isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                and node.value in known:  # the bare package name is also a plain word ("voicecall" the client id)
            yield node.value


def violations(root: Path) -> set[tuple[str, str]]:
    found = modules(root)
    known = set(found)
    top = root.name
    services = {p.parent.name for p in root.glob("*/__init__.py")} - set(SHARED)
    result = set()
    for name, path in found.items():
        for target in references(name, path, known):
            if target == name:
                continue
            if name.startswith(f"{top}.runtime.") or name == f"{top}.runtime":
                if not (target == f"{top}.runtime" or target.startswith(f"{top}.runtime.")):
                    result.add((name, target))  # (a) the runtime imports nothing else of the project
                continue
            service = target.split(".")[1] if target.count(".") >= 1 else None
            if service in services and name not in COMMAND and name.split(".")[1:2] != [service]:
                result.add((name, target))  # (b) a service is imported only by its own modules and the command
    return result


def cycles(root: Path) -> set[frozenset[str]]:
    """The groups of modules that import each other around a loop (strongly connected, more than one module)."""
    found = modules(root)
    known = set(found)
    graph = {name: {t for t in references(name, path, known, by_name=False) if t != name and t in known}
             for name, path in found.items()}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reach = {name: reachable(name) for name in graph}
    return {frozenset({name, *(o for o in reach[name] if name in reach[o])}) for name in graph if name in reach[name]}


def test_runtime_imports_nothing_else_and_services_only_the_command() -> None:
    assert violations(ROOT) == set()


def test_no_import_cycles() -> None:
    assert cycles(ROOT) == set()


def test_the_rule_catches_each_kind_of_import(tmp_path: Path) -> None:
    root = tmp_path / "voicecall"
    files = {
        "__init__.py": "",
        "cli.py": "import voicecall.billing.core\nfrom voicecall.commands import MODULES\n",
        "commands.py": "MODULES = {'ingress': 'voicecall.ingress.app', 'future': 'voicecall.future.run'}\n",
        "huawei.py": "",
        "runtime/__init__.py": "",
        "runtime/ok.py": "from voicecall.runtime import other\nfrom . import other as again\n",
        "runtime/other.py": "CLIENT_ID = 'voicecall'\n",
        "runtime/bad.py": "def f():\n    from voicecall import huawei\n",
        "runtime/relative.py": "from ..topics import table\n",
        "topics/__init__.py": "",
        "topics/table.py": "from voicecall.runtime import other\n",
        "ingress/__init__.py": "",
        "ingress/app.py": "from voicecall import huawei, topics\nfrom voicecall.runtime.other import x\n",
        "billing/__init__.py": "",
        "billing/core.py": "from .. import ingress\n",
        "billing/cli.py": "import importlib\nimportlib.import_module('voicecall.ingress.app')\n",
        "future/__init__.py": "",
        "future/run.py": "from voicecall.billing import core\nfrom voicecall.commands import MODULES\n",
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    assert violations(root) == {
        ("voicecall.runtime.bad", "voicecall.huawei"),
        ("voicecall.runtime.relative", "voicecall.topics.table"),
        ("voicecall.billing.core", "voicecall.ingress"),
        ("voicecall.billing.cli", "voicecall.ingress.app"),
        ("voicecall.future.run", "voicecall.billing.core"),  # a new service package is covered without a list
    }
    assert cycles(root) == set()
    (root / "topics" / "table.py").write_text("def f():\n    from voicecall.topics import manifests\n")
    (root / "topics" / "manifests.py").write_text("from voicecall.topics import table\n")
    assert cycles(root) == {frozenset({"voicecall.topics.table", "voicecall.topics.manifests"})}
