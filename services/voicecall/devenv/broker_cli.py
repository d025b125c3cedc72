"""``voicecall broker``: run the embedded Kafka broker in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from voicecall.runtime import config, logging as vlog
from voicecall.runtime.broker import BrokerError, start_broker

BROKER_KINDS = ("auto", "apache", "noida", "external")


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", choices=BROKER_KINDS, default="auto",
                        help="apache = Apache Kafka from Maven Central (needs java + mvn); noida = the noida-db "
                             "package; external = use VOICECALL_KAFKA_BOOTSTRAP as is; auto = apache when java "
                             "and mvn are available, else noida (default)")
    parser.add_argument("--state-dir", type=Path, default=Path(".state"),
                        help="where the broker keeps its data and logs (default .state)")
    parser.add_argument("--bootstrap", help="address to listen on / connect to (VOICECALL_KAFKA_BOOTSTRAP)")


def listen_port(bootstrap: str) -> int:
    """The port of the first ``host:port`` of a bootstrap list."""
    first = bootstrap.split(",")[0].strip()
    _, _, port = first.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"VOICECALL_KAFKA_BOOTSTRAP: no port in {bootstrap!r}")
    return int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)


def main(args: argparse.Namespace) -> int:
    settings = config.load(config.CommonSettings, kafka_bootstrap=args.bootstrap)
    vlog.setup(settings.log_level, settings.log_format)
    # Handlers first: a SIGTERM while the broker is still starting must not leave it running without us.
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        handle = start_broker(args.broker, port=listen_port(settings.kafka_bootstrap),
                              state_dir=args.state_dir / "broker", bootstrap=settings.kafka_bootstrap)
    except BrokerError as error:
        print(f"voicecall broker: {error}\n(VOICECALL_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is where it "
              "listens; set another host:port)", file=sys.stderr)
        return 1
    print(f"broker ({handle.kind}) listening on {handle.bootstrap}; stop with Ctrl-C", flush=True)
    stopped.wait()
    handle.stop()
    print("broker stopped", flush=True)
    return 0
