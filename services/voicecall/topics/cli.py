"""``voicecall topics``: ``create`` (idempotent) or ``manifest`` (Strimzi YAML), both from the one topic table."""

from __future__ import annotations

import argparse
import asyncio

from voicecall.runtime import config, logging as vlog, stops
from voicecall.topics import manifests
from voicecall.topics.admin import create
from voicecall.topics.table import TopicSettings, format_plan, plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create_p = sub.add_parser("create", help="create every topic with its partitions and configs (idempotent)")
    create_p.add_argument("--dry-run", action="store_true", help="print the plan as a table and exit")
    create_p.add_argument("--partitions", type=int, help="partitions per topic (VOICECALL_TOPIC_PARTITIONS)")
    create_p.add_argument("--replication", type=int, help="replication factor (VOICECALL_TOPIC_REPLICATION)")
    create_p.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")
    manifest_p = sub.add_parser("manifest", help="print Strimzi KafkaTopic (or KafkaUser) resources as YAML")
    manifest_p.add_argument("--what", choices=("topics", "users"), default="topics",
                            help="KafkaTopic per topic, or KafkaUser with ACLs per service")
    manifest_p.add_argument("--cluster", help="Strimzi Kafka cluster name (label strimzi.io/cluster)")
    manifest_p.add_argument("--partitions", type=int, help="partitions per topic (VOICECALL_TOPIC_PARTITIONS)")
    manifest_p.add_argument("--replication", type=int, help="replication factor (VOICECALL_TOPIC_REPLICATION)")


def main(args: argparse.Namespace) -> int:
    stops.restore()  # a one-shot: Ctrl-C interrupts it as usual
    settings = config.load(TopicSettings, topic_partitions=args.partitions, topic_replication=args.replication,
                           kafka_bootstrap=getattr(args, "bootstrap", None))
    vlog.setup(settings.log_level, settings.log_format)
    if args.action == "manifest":
        print(manifests.render(settings, args.what, args.cluster or manifests.DEFAULT_CLUSTER), end="")
        return 0
    if args.action == "create" and args.dry_run:
        print(format_plan(plan(settings)))
        return 0
    outcome = asyncio.run(create(settings))
    for topic, what in outcome.items():
        print(f"{topic}: {what}")
    return 0
