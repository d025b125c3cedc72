"""``voicecall replay reset|copy``: re-processing of a time window.

``reset`` rewinds a stopped service's consumer group so it reprocesses everything from a time on; ``copy``
re-publishes a bounded window of one topic into another. See docs/downstream.md for the semantics.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from voicecall.replay import copy as replay_copy, reset as replay_reset, window
from voicecall.runtime import config, lifecycle, logging as vlog, stops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    sub = parser.add_subparsers(dest="action", required=True)

    reset_p = sub.add_parser(
        "reset", help="rewind a stopped service's consumer group to the first record at/after a time",
        description="Rewind the consumer group of a service on its input topic (dedup ← fee.raw, billing and "
                    "recordings ← fee.unique, calls ← status.raw, fee.unique, billing and recording.*) to the "
                    "first record at or after --from, per partition, so it reprocesses everything from then on "
                    "when it next starts. Refuses while the group has active members.")
    reset_p.add_argument("--service", required=True, choices=sorted(replay_reset.INPUTS))
    reset_p.add_argument("--from", dest="since", required=True, metavar="T", help=window.forms("--from"))
    reset_p.add_argument("--dry-run", action="store_true",
                         help="print per partition the current and new offsets and how many records would be "
                              "reprocessed; commit nothing")
    reset_p.add_argument("--wait", default="0", metavar="DURATION",
                         help="wait up to this long (e.g. 60s) for the group's members to leave, as a stage just "
                              "sent SIGTERM does, before refusing (default 0: refuse at once)")
    reset_p.add_argument("--bootstrap", dest="bootstrap_sub", help=argparse.SUPPRESS)

    copy_p = sub.add_parser(
        "copy", help="re-publish the records of a time window into a topic",
        description="Copy the records whose timestamp t has FROM <= t < TO from one topic to another, in order "
                    "per partition, with their keys and headers plus voicecall-replay-id.")
    copy_p.add_argument("--from-topic", required=True, help="source topic (suffix such as fee.unique, or full name)")
    copy_p.add_argument("--to-topic", required=True, help="target topic (suffix such as fee.raw, or full name)")
    copy_p.add_argument("--from", dest="since", required=True, metavar="T1",
                        help="inclusive; " + window.forms("--from"))
    copy_p.add_argument("--to", dest="until", metavar="T2", help="exclusive (default: now)")
    copy_p.add_argument("--key", metavar="SID", help="only the records of this key (a call's sessionId)")
    copy_p.add_argument("--replay-id", help="the voicecall-replay-id header value (default: a new random id)")
    copy_p.add_argument("--batch", type=int, default=1000, help="records per acknowledged batch (default 1000)")
    copy_p.add_argument("--grace", default="60s",
                        help="how far past --to to keep reading for records with out-of-order timestamps "
                             "(default 60s)")
    copy_p.add_argument("--dry-run", action="store_true", help="count what would be copied; produce nothing")
    copy_p.add_argument("--from-internal", action="store_true",
                        help="allow an internal topic (a stage's state, e.g. dedup.changelog) as --from-topic; "
                             "one is never allowed as --to-topic")
    copy_p.add_argument("--bootstrap", dest="bootstrap_sub", help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    settings = config.load(config.CommonSettings,
                           kafka_bootstrap=getattr(args, "bootstrap_sub", None) or args.bootstrap)
    vlog.setup(settings.log_level, settings.log_format)
    try:
        since = window.parse(args.since)
        until = window.parse(args.until) if getattr(args, "until", None) else None
        win = window.Window(since, until if until is not None else window.parse("now")) \
            if args.action == "copy" else window.Window(since)
    except window.BadTime as error:
        print(f"voicecall replay {args.action}: {error}", file=sys.stderr)
        return 2
    if args.action == "reset":
        try:
            wait = config.parse_duration(args.wait)
        except ValueError as error:
            print(f"voicecall replay reset: --wait: {error}", file=sys.stderr)
            return 2
        stops.restore()  # a one-shot: Ctrl-C interrupts it as usual
        return asyncio.run(replay_reset.reset(settings, args.service, since, args.dry_run, wait=wait))
    if args.batch < 1:
        print("voicecall replay copy: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        grace_ms = round(config.parse_duration(args.grace) * 1000)
    except ValueError as error:
        print(f"voicecall replay copy: --grace: {error}", file=sys.stderr)
        return 2
    outcome: list[replay_copy.Summary] = []

    async def service(stop: asyncio.Event) -> None:  # a refused topic leaves as a Refusal: one line, exit 2
        outcome.append(await replay_copy.copy(
            settings, args.from_topic, args.to_topic, win, only_key=args.key, replay_id=args.replay_id,
            dry_run=args.dry_run, batch=args.batch, grace_ms=grace_ms, stop=stop, from_internal=args.from_internal))

    code = lifecycle.run(service)
    if outcome:
        print(outcome[0].render())
    return code
