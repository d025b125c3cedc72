"""The ``voicecall`` console script: the table of commands is :mod:`voicecall.commands`; only the module of the
command being run is imported."""

from __future__ import annotations

import argparse
import importlib
import sys

from voicecall import __version__, settingsdoc
from voicecall.commands import COMMANDS
from voicecall.runtime import failures, streams


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
    streams.protect()  # no log line or report may raise: stderr closed, `| tee` ended
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        top.print_help(sys.stderr)  # no command is a usage error, not a success
        return 2
    if argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit 0 here, anything else is an argparse error (2)
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}")
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    parser = argparse.ArgumentParser(prog=f"voicecall {name}", description=command.help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    if command.settings:  # after the command's own epilog, if it has one
        parser.epilog = "\n\n".join(part for part in (parser.epilog, settingsdoc.help_epilog(name)) if part)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except failures.Refusal as refusal:
        action = getattr(args, "action", None)  # replay reset, topics create, …
        print(f"voicecall {name}{f' {action}' if action else ''}: {refusal}", file=sys.stderr, flush=True)
        return failures.EXIT_CONFIG
