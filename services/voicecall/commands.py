"""Every ``voicecall`` command, in one table: the module that runs it, its one-line help, and for those that
``voicecall dev`` starts or checks, the settings class.

Modules are named, not imported: ``voicecall tail`` does not pay for aiohttp's server, and this table depends on
no service. Each command module exposes ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings


@dataclass(frozen=True)
class Command:
    module: str
    help: str
    # "module:Class": listed in its --help and docs/configuration.md; a service's (and the simulator's) are
    # validated by `voicecall dev` before it starts anything
    settings: str | None = None
    service: bool = False  # a long-running service: `voicecall dev` runs one process of it


COMMANDS: dict[str, Command] = {
    "ingress": Command("voicecall.ingress.cli", "the aiohttp HTTP ingress (status and fee pushes → Kafka)",
                       "voicecall.ingress.config:IngressSettings", service=True),
    "dedup": Command("voicecall.dedup.cli", "the fee-record deduplicator (fee.raw → fee.unique)",
                     "voicecall.dedup.config:DedupSettings", service=True),
    "billing": Command("voicecall.billing.cli", "the billing-duration processor (fee.unique → billing)",
                       "voicecall.billing.config:BillingSettings", service=True),
    "recordings": Command("voicecall.recordings.cli", "the recording downloader (fee.unique → storage + recording.*)",
                          "voicecall.recordings.config:RecordingsSettings", service=True),
    "calls": Command("voicecall.calls.cli", "the call view (status.raw, fee.unique, billing, recording.* → calls)",
                     "voicecall.calls.config:CallsSettings", service=True),
    "topics": Command("voicecall.topics.cli", "create every topic (idempotent) or render its manifests",
                      "voicecall.topics.table:TopicSettings"),
    "replay": Command("voicecall.replay.cli", "re-processing of a time window (reset a group, copy a window)",
                      "voicecall.runtime.config:CommonSettings"),
    "tail": Command("voicecall.replay.tail", "print the events of a topic as JSON lines",
                    "voicecall.runtime.config:CommonSettings"),
    "simulate": Command("voicecall.simulator.cli",
                        "a stand-in for the Huawei platform: pushes, re-pushes, recording API",
                        "voicecall.simulator.cli:SimulateSettings"),
    "broker": Command("voicecall.devenv.broker.cli", "run the embedded Kafka broker (Apache Kafka or noida-db)",
                      "voicecall.devenv.broker.config:BrokerSettings"),
    "dev": Command("voicecall.devenv.dev", "the embedded default: broker, topics and every service in one command",
                   "voicecall.devenv.plan:DevSettings"),
}

SERVICES = tuple(name for name, command in COMMANDS.items() if command.service)


def settings_class(name: str) -> type[BaseSettings]:
    """The settings class of command ``name`` (imported now)."""
    spec = COMMANDS[name].settings
    if spec is None:
        raise KeyError(f"command {name!r} has no settings class in voicecall.commands")
    module_name, _, class_name = spec.partition(":")
    cls: type[BaseSettings] = getattr(importlib.import_module(module_name), class_name)
    return cls
