"""The ``voicecall`` console script.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``; only the
module of the command being run is imported, so ``voicecall tail`` does not pay for aiohttp's server.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from voicecall import __version__

# command: (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingress": ("voicecall.ingress.cli", "the aiohttp HTTP ingress (status and fee pushes → Kafka)"),
    "dedup": ("voicecall.dedup.cli", "the fee-record deduplicator (fee.raw → fee.unique)"),
    "billing": ("voicecall.billing.cli", "the billing-duration processor (fee.unique → billing)"),
    "recordings": ("voicecall.recordings.cli", "the recording downloader (fee.unique → storage + recording.*)"),
    "topics": ("voicecall.topics.cli", "create every topic (idempotent) or render its manifests"),
    "replay": ("voicecall.replay.cli", "re-processing of a time window (reset a group, copy a window)"),
    "tail": ("voicecall.replay.tail", "print the events of a topic as JSON lines"),
    "simulate": ("voicecall.simulator.cli", "a stand-in for the Huawei platform: pushes, re-pushes, recording API"),
    "broker": ("voicecall.devenv.broker_cli", "run the embedded Kafka broker (Apache Kafka or noida-db)"),
    "dev": ("voicecall.devenv.dev", "the embedded default: broker, topics and every service in one command"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicecall",
        description="Huawei Cloud Voice Call event pipeline. Settings come from VOICECALL_* environment "
                    "variables; flags override them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=f"voicecall {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="see the list below")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        top.print_help(sys.stderr)  # no command is a usage error, not a success
        return 2
    if argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit 0 here, anything else is an argparse error (2)
        return 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        top.error(f"unknown command {command!r}")
    module_name, text = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            print(f"voicecall {command}: not available in this build yet ({module_name} is missing)",
                  file=sys.stderr)
            return 3
        raise
    parser = argparse.ArgumentParser(prog=f"voicecall {command}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.main(args) or 0)
