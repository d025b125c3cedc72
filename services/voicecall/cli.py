"""The ``voicecall`` console script: the table of commands is :mod:`voicecall.commands`; only the module of the
command being run is imported."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from voicecall import __version__
from voicecall.commands import COMMANDS
from voicecall.runtime import stops, streams


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicecall",
        description="Huawei Cloud Voice Call event pipeline. Settings come from VOICECALL_* environment "
                    "variables; flags override them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<11} {command.help}" for name, command in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=f"voicecall {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="see the list below")
    return parser


def main(argv: list[str] | None = None) -> int:
    with stops.deferred():  # a stop signal while the command starts is remembered, not fatal (runtime/stops.py)
        name, module, args = _load(argv)
        if stops.requested():
            return 0  # stopped before it started: nothing was in flight
        from voicecall.runtime import failures

        try:
            return int(module.main(args) or 0)
        except failures.Refusal as refusal:
            action = getattr(args, "action", None)  # replay reset, topics create, …
            print(f"voicecall {name}{f' {action}' if action else ''}: {refusal}", file=sys.stderr, flush=True)
            return failures.EXIT_USAGE


def _load(argv: list[str] | None) -> tuple[str, Any, argparse.Namespace]:
    """The command's name, its module (imported) and its parsed arguments; usage errors and --help exit here."""
    streams.protect()  # no log line or report may raise: stderr closed, `| tee` ended
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        top.print_help(sys.stderr)  # no command is a usage error, not a success
        raise SystemExit(2)
    if argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit 0 here, anything else is an argparse error (2)
        raise SystemExit(2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}")
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    parser = _CommandParser(settings_of=name if command.settings else None, prog=f"voicecall {name}",
                            description=command.help, formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return name, module, parser.parse_args(rest)


class _CommandParser(argparse.ArgumentParser):
    """A command's parser whose help ends with the command's settings list: built only when help is shown (it
    reads every settings field), after the command's own epilog, if it has one."""

    def __init__(self, settings_of: str | None = None, **kwargs: Any) -> None:  # subparsers: None
        super().__init__(**kwargs)
        self._settings_of = settings_of

    def format_help(self) -> str:
        if self._settings_of is not None:
            from voicecall import settingsdoc

            listed = settingsdoc.help_epilog(self._settings_of)
            self.epilog = "\n\n".join(part for part in (self.epilog, listed) if part)
            self._settings_of = None
        return super().format_help()
