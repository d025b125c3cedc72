"""``voicecall tail TOPIC``: print a topic's records as JSON lines, for downstream developers.

One object per record on stdout: ``topic``, ``partition``, ``offset``, ``timestamp`` (ISO 8601 UTC), ``key``,
``value`` (the JSON document; text or base64 with ``value_encoding`` when the value is not JSON) and, with
``--headers``, ``headers``. Reads with ``isolation.level=read_committed`` and without a consumer group (it never
moves anyone's offsets). Starts at the end unless ``--from-beginning`` or ``--since``; stops on SIGINT/SIGTERM,
after ``--max`` records, or after ``--timeout`` seconds without a record, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from typing import Any, BinaryIO

import orjson
from aiokafka import TopicPartition

from voicecall.replay import names, window
from voicecall.runtime import config, lifecycle, logging as vlog, times
from voicecall.runtime.kafka import make_consumer


def render(record: Any, with_headers: bool) -> dict[str, Any]:
    """A consumer record → the JSON object printed for it."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": times.iso_ms(record.timestamp),
        "key": _text(record.key),
    }
    value = record.value
    if value is None:
        out["value"] = None
    else:
        try:
            out["value"] = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:
                out["value"] = value.decode("utf-8")
                out["value_encoding"] = "text"
            except UnicodeDecodeError:
                out["value"] = base64.b64encode(value).decode()
                out["value_encoding"] = "base64"
    if with_headers:
        out["headers"] = {k: _text(v) for k, v in record.headers or ()}
    return out


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print the records of a topic as JSON lines on stdout. Starts at the end of the topic "
                          "(only records written from now on) unless --from-beginning or --since; stops on "
                          "Ctrl-C/SIGTERM, after --max records or after --timeout seconds without one.")
    parser.add_argument("topic", metavar="TOPIC",
                        help="a topic suffix such as billing or fee.unique (the prefix is added) or a full name")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the oldest retained record (default: at the end, new records only)")
    start.add_argument("--since", metavar="T",
                       help=f"start at the first record at/after T: {window.forms('--since')}")
    parser.add_argument("--key", metavar="SID", help="only records with this key (a call's sessionId)")
    parser.add_argument("--headers", action="store_true", help="include the record headers (CloudEvents)")
    parser.add_argument("--max", type=int, metavar="N", help="exit after printing N records")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="exit 0 when no record has arrived for this many seconds (also while the broker "
                             "is unreachable)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VOICECALL_KAFKA_BOOTSTRAP)")


async def tail(settings: config.CommonSettings, args: argparse.Namespace, stop: asyncio.Event,
               out: BinaryIO) -> None:
    since = window.parse(args.since) if args.since else None
    only_key = args.key.encode() if args.key is not None else None
    consumer = make_consumer(settings, group_id=None, client_id=f"{settings.kafka_client_id}-tail")
    try:
        await consumer.start()
        existing = await names.partitions(settings)
        topic = names.resolve(args.topic, settings.topic_prefix, existing)
        tps = [TopicPartition(topic, p) for p in existing[topic]]
        consumer.assign(tps)
        if args.from_beginning:
            await consumer.seek_to_beginning(*tps)
        elif since is not None:
            found = await consumer.offsets_for_times({tp: since for tp in tps})
            for tp in tps:
                if found.get(tp):
                    consumer.seek(tp, found[tp].offset)
                else:
                    await consumer.seek_to_end(tp)
        else:
            await consumer.seek_to_end(*tps)
        printed = 0
        last_seen = time.monotonic()  # a broker outage meanwhile is logged once per broker (runtime.kafkalog)
        while not stop.is_set():
            now = time.monotonic()
            if args.max is not None and printed >= args.max:
                return
            if args.timeout is not None and now - last_seen >= args.timeout:
                return
            fetched = await consumer.getmany(timeout_ms=200, max_records=500)
            lines: list[bytes] = []
            for records in fetched.values():
                for record in records:
                    if only_key is not None and record.key != only_key:
                        continue
                    if args.max is not None and printed + len(lines) >= args.max:
                        break
                    lines.append(orjson.dumps(render(record, args.headers)))
            if fetched:
                last_seen = time.monotonic()
            if lines:
                printed += len(lines)
                try:
                    out.write(b"\n".join(lines) + b"\n")
                    out.flush()
                except BrokenPipeError:  # `voicecall tail … | head`: the reader has had enough
                    return
    finally:
        await consumer.stop()


def main(args: argparse.Namespace) -> int:
    settings = config.load(config.CommonSettings, kafka_bootstrap=args.bootstrap)
    vlog.setup(settings.log_level, settings.log_format)
    try:
        if args.since:
            window.parse(args.since)
    except window.BadTime as error:
        print(f"voicecall tail: --since: {error}", file=sys.stderr)
        return 2

    # an unknown topic leaves as a Refusal: one line, exit 2
    return lifecycle.run(lambda stop: tail(settings, args, stop, sys.stdout.buffer))
