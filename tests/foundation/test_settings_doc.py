"""Help and docs cannot drift from the code: every setting the code reads is a described field of a settings class
of some command, listed in that command's --help and in docs/configuration.md, which is exactly what the generator
makes (`make docs`); the docs name no variable that does not exist; --help tells no lie we were caught at."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

import voicecall
from voicecall import settingsdoc
from voicecall.commands import COMMANDS, settings_class

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"VOICECALL_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])")
NOT_SETTINGS = {"VOICECALL_TEST_BOOTSTRAP"}  # read by the test suite only (tests/conftest.py)


def every_settings_class() -> set[type[BaseSettings]]:
    for module in pkgutil.walk_packages(voicecall.__path__, "voicecall."):
        if not module.name.endswith("__main__"):  # importing that one runs the command line
            importlib.import_module(module.name)
    found: set[type[BaseSettings]] = set()
    todo = [BaseSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("voicecall.") and sub not in found:
                found.add(sub)
                todo.append(sub)
            elif not sub.__module__.startswith("voicecall."):
                todo.append(sub)
    return found


def variables_of(cls: type[BaseSettings]) -> set[str]:
    return {f"VOICECALL_{name.upper()}" for name in cls.model_fields}


def test_the_checked_in_table_is_what_the_generator_makes() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == settingsdoc.markdown(), \
        "docs/configuration.md is out of date: run `make docs`"
    check = subprocess.run([sys.executable, "-m", "voicecall.settingsdoc", "--check",
                            str(ROOT / "docs" / "configuration.md")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_the_generator_refuses_a_field_without_a_description() -> None:
    from pydantic import Field

    from voicecall.runtime.config import CommonSettings

    class Undocumented(CommonSettings):
        mystery_knob: int = Field(3)

    with pytest.raises(ValueError, match="mystery_knob has no description"):
        settingsdoc.settings_of(Undocumented)


def test_every_settings_class_belongs_to_a_command_and_every_field_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    by_command = {name: settings_class(name) for name, command in COMMANDS.items() if command.settings}
    for cls in every_settings_class():
        if cls.model_config.get("env_prefix") == "OTEL_":
            # OpenTelemetry's own variables (runtime/tracing.py), read by every service: described, and documented
            # with tracing in docs/operations.md rather than per command.
            assert all(info.description for info in cls.model_fields.values()), cls.__name__
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" in (ROOT / "docs" / "operations.md").read_text()
            continue
        users = [name for name, used in by_command.items() if issubclass(used, cls)]
        assert users, f"{cls.__module__}.{cls.__name__} is used by no command of voicecall.commands"
        for name, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{name} has no description"
            variable = f"VOICECALL_{name.upper()}"
            assert f"`{variable}`" in doc, f"{variable} is not in docs/configuration.md"


@pytest.mark.parametrize("command", sorted(name for name, command in COMMANDS.items() if command.settings))
def test_help_lists_every_setting_of_the_command(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "voicecall", command, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    listed = set(VARIABLE.findall(result.stdout.split("settings (environment variables", 1)[1]))
    assert variables_of(settings_class(command)) <= listed, variables_of(settings_class(command)) - listed


def test_every_variable_named_anywhere_is_a_setting() -> None:
    """The code (messages, environments it builds), the docs and the manifests name only real settings: a typo
    or a removed setting shows up here."""
    known = set().union(*(variables_of(cls) for cls in every_settings_class())) | NOT_SETTINGS
    places = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "services").rglob("*.py"),
              *(ROOT / "deploy").rglob("*.yaml"), *(ROOT / "deploy").rglob("*.env"), ROOT / "Makefile"]
    unknown = {(str(path.relative_to(ROOT)), name) for path in places if path.is_file()
               for name in VARIABLE.findall(path.read_text(errors="replace")) if name not in known}
    assert not unknown, sorted(unknown)


def test_tail_help_tells_where_it_starts_and_suggests_only_its_own_flags() -> None:
    result = subprocess.run([sys.executable, "-m", "voicecall", "tail", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "--from=" not in result.stdout and "--since=-2h" in result.stdout, result.stdout
    assert "Starts at the end of the topic" in " ".join(result.stdout.split()), result.stdout


def test_dedup_takes_the_metrics_port_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "voicecall", "dedup", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "--metrics-port" in result.stdout
