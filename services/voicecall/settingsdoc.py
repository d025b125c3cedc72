"""The settings of every command, made from the settings classes themselves (each field's ``description``): the
list at the end of ``voicecall <command> --help`` and docs/configuration.md, so neither can drift from the code.

``python -m voicecall.settingsdoc`` (``make docs``) writes docs/configuration.md; ``--check`` only says whether
the file is up to date (exit 1 when not).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from voicecall.commands import COMMANDS, settings_class
from voicecall.runtime import config

DOC = Path("docs/configuration.md")
SHARED = config.CommonSettings
_DURATION_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))
_SIZE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))


@dataclass(frozen=True)
class Setting:
    variable: str
    default: str
    description: str


def _parser_of(info: FieldInfo) -> Any:
    for item in info.metadata:
        func = getattr(item, "func", None)
        if func is config.parse_duration or func is config.parse_size:
            return func
    return None


def format_duration(seconds: float) -> str:
    for unit, size in _DURATION_UNITS:
        count = seconds / size
        if seconds and count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    for unit, bytes_ in _SIZE_UNITS:
        if size and size % bytes_ == 0:
            return f"{size // bytes_}{unit}"
    return str(size)


def format_default(info: FieldInfo) -> str:
    """The default as one would write it in the variable ('unset' when there is none)."""
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    parser = _parser_of(info)
    if parser is config.parse_duration:
        return format_duration(float(value))
    if parser is config.parse_size:
        return format_size(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        value = ",".join(f"{key}={item}" for key, item in value.items())
    elif isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    return str(value) if str(value) != "" else "empty"


def settings_of(cls: type[BaseModel], *, exclude: type[BaseModel] | None = None) -> list[Setting]:
    """Every field of ``cls`` (less those ``exclude`` has with the same default and meaning), as variables."""
    prefix = str(cls.model_config.get("env_prefix", config.ENV_PREFIX))
    skipped = exclude.model_fields if exclude is not None else {}
    rows = []
    for name, info in cls.model_fields.items():
        if name in skipped and _same(info, skipped[name]):
            continue
        if not info.description:
            raise ValueError(f"{cls.__module__}.{cls.__name__}.{name} has no description: every setting says "
                             "what it does (Field(..., description=...))")
        rows.append(Setting(f"{prefix}{name.upper()}", format_default(info), info.description))
    return rows


def _same(a: FieldInfo, b: FieldInfo) -> bool:
    return format_default(a) == format_default(b) and a.description == b.description


def commands_with_settings() -> dict[str, type[BaseModel]]:
    return {name: settings_class(name) for name, command in COMMANDS.items() if command.settings}


def help_epilog(command: str) -> str:
    """The settings part of ``voicecall <command> --help``."""
    own = settings_of(settings_class(command), exclude=SHARED)
    shared = settings_of(SHARED)
    width = max(len(row.variable) for row in [*own, *shared]) + 2
    lines = ["settings (environment variables, [default]; a flag above overrides its variable):"]
    for title, rows in (("", own), ("shared by every command:", shared)):
        if title and own:
            lines.append(title)
        for row in rows:
            lines += textwrap.wrap(f"{row.description} [{row.default}]", 118, break_on_hyphens=False,
                                   initial_indent=f"  {row.variable:<{width}}", subsequent_indent=" " * (width + 2))
    if command == "dev":
        lines.append("every service's own settings (voicecall <service> --help) reach the services dev starts")
    lines.append("durations: 500ms, 30s, 15m, 2h, 7d; sizes: 1048576, 512KiB, 1MiB, 200MB; every command's "
                 "settings: docs/configuration.md")
    return "\n".join(lines)


def _table(rows: list[Setting]) -> list[str]:
    out = ["| variable | default | meaning |", "|---|---|---|"]
    for row in rows:
        meaning = row.description.replace("|", "\\|").replace("<", "&lt;")
        default = f"_{row.default}_" if row.default in ("unset", "empty") else f"`{row.default}`"
        out.append(f"| `{row.variable}` | {default} | {meaning} |")
    return out


def markdown() -> str:
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from the settings classes by `make docs` (python -m voicecall.settingsdoc): edit the",
        "     fields' descriptions, not this file. A test fails when the two differ. -->",
        "",
        "Every setting is an environment variable; a command-line flag overrides its variable (see `voicecall",
        "<command> --help`, which ends with the same list). A bad value stops the command at start with exit",
        "status 2 and one message naming the variable. Durations are written `500ms`, `30s`, `15m`, `2h`, `7d` (a",
        "plain number is seconds); sizes `1048576`, `512KiB`, `1MiB`, `200MB`; lists are comma-separated.",
        "",
        "## Shared by every command",
        "",
        *_table(settings_of(SHARED)),
    ]
    for name, cls in commands_with_settings().items():
        rows = settings_of(cls, exclude=SHARED)
        lines += ["", f"## `voicecall {name}`", "", COMMANDS[name].help[:1].upper() + COMMANDS[name].help[1:] + ".",
                  ""]
        lines += _table(rows) if rows else ["Only the shared settings."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecall.settingsdoc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, default=DOC, help=f"where to write (default {DOC})")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the settings")
    args = parser.parse_args(argv)
    text = markdown()
    current = args.path.read_text() if args.path.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.path} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.path.write_text(text)
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
