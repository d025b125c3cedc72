"""The one table of commands (voicecall.commands): every module and settings class it names exists, the CLI and
`voicecall dev` read it, and the host:port parser every command shares."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from voicecall import cli, commands
from voicecall.runtime import config

DEVENV = Path(commands.__file__).parent / "devenv"


@pytest.mark.parametrize("name", sorted(commands.COMMANDS))
def test_every_command_module_runs_the_command_interface(name: str) -> None:
    module = importlib.import_module(commands.COMMANDS[name].module)
    assert callable(module.add_arguments) and callable(module.main)
    if commands.COMMANDS[name].settings:
        assert issubclass(commands.settings_class(name), BaseSettings)


def test_dev_runs_the_services_of_the_table() -> None:
    assert commands.SERVICES == ("ingress", "dedup", "billing", "recordings", "calls")
    assert all(commands.COMMANDS[name].settings for name in commands.SERVICES)


def test_the_cli_and_dev_keep_no_list_of_their_own() -> None:
    assert "COMMANDS" not in vars(cli) or cli.COMMANDS is commands.COMMANDS
    for path in DEVENV.rglob("*.py"):  # the cycle cli → devenv → cli is gone
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert "voicecall.cli" not in imported, path


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2 and "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9092", ("127.0.0.1", 9092)),
    (" kafka-0.kafka:9093 ", ("kafka-0.kafka", 9093)),
    ("[::1]:9092", ("::1", 9092)),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert config.parse_address(text) == expected


@pytest.mark.parametrize("text", ["localhost", "localhost:", ":9092", "host:99999", "host:x1", ""])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        config.parse_address(text)


def test_parse_address_default_host_and_bootstrap_lists() -> None:
    assert config.parse_address(":18080", default_host="127.0.0.1") == ("127.0.0.1", 18080)
    assert config.parse_bootstrap("a:1, b:2") == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError):
        config.parse_bootstrap("a:1,b")
