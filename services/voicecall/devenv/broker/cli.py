"""``voicecall broker``: run the embedded Kafka broker in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from voicecall.devenv.broker import KINDS, BrokerError, BrokerHandle, start_broker
from voicecall.devenv.broker.config import BrokerSettings
from voicecall.runtime import config, logging as vlog, stops
from voicecall.runtime.failures import BrokerUnreachable, Refusal

EXTERNAL_WAIT = 10.0  # seconds an external cluster has to answer


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", choices=KINDS, default="auto",
                        help="apache = Apache Kafka from Maven Central (needs java + mvn); noida = the noida-db "
                             "package; external = use VOICECALL_KAFKA_BOOTSTRAP as is; auto = apache when java "
                             "and mvn are available, else noida (default)")
    parser.add_argument("--state-dir", type=Path, default=Path(".state"),
                        help="where the broker keeps its data and logs (default .state)")
    parser.add_argument("--bootstrap", help="address to listen on / connect to (VOICECALL_KAFKA_BOOTSTRAP)")
    parser.add_argument("--nodes", type=_node_count, default=1,
                        help="Apache Kafka nodes (each broker and controller); 3 or more gives replication 3 and "
                             "min ISR 2 like a production cluster (default 1). The first listens on the bootstrap "
                             "port, the others on free ports")


def _node_count(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if not 1 <= value <= 9:
        raise argparse.ArgumentTypeError(f"expected 1 to 9 nodes, got {text!r}")
    return value


def start(settings: BrokerSettings, kind: str, state_dir: Path, nodes: int = 1) -> BrokerHandle:
    """The broker of ``kind`` on ``state_dir/broker``, listening where the settings say (or, external, being that
    cluster). Blocks until it answers."""
    if kind == "external":  # a cluster that is said to run answers at once, or is not where the settings say
        try:
            return start_broker(kind, state_dir=state_dir / "broker", bootstrap=settings.kafka_bootstrap,
                                wait_timeout=EXTERNAL_WAIT)
        except BrokerError as error:
            raise BrokerUnreachable(settings.kafka_bootstrap, str(error)) from None
    return start_broker(kind, port=settings.listen_port, state_dir=state_dir / "broker",
                        bootstrap=settings.kafka_bootstrap, kafka_lib=settings.kafka_lib, nodes=nodes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)


def main(args: argparse.Namespace) -> int:
    settings = config.load(BrokerSettings, kafka_bootstrap=args.bootstrap)
    vlog.setup(settings.log_level, settings.log_format)
    # Handlers first: a SIGTERM while the broker is still starting must not leave it running without us.
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    if stops.requested():
        stopped.set()
    problem = settings.port_problem(args.broker)
    if problem:
        raise Refusal(problem)
    try:
        handle = start(settings, args.broker, args.state_dir, args.nodes)
    except BrokerError as error:
        print(f"voicecall broker: {error}\n(VOICECALL_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is where it "
              "listens; set another host:port)", file=sys.stderr)
        return 1
    if handle.fallback:
        print(f"broker: noida-db instead of Apache Kafka: {handle.fallback_line()}", flush=True)
    print(f"broker ({handle.kind}) listening on {handle.bootstrap}; stop with Ctrl-C", flush=True)
    if len(handle.nodes) > 1:
        for node_id, node in enumerate(handle.nodes, start=1):
            host, port = handle.address(node_id)
            print(f"  node {node_id}: {host}:{port} pid {node.pid}", flush=True)
        print("a node that dies (try kill -9) is started again after 5 s", flush=True)
    while not stopped.wait(5):
        if len(handle.nodes) > 1:
            revive(handle)
    handle.stop()
    print("broker stopped", flush=True)
    return 0


def revive(handle: BrokerHandle) -> None:
    """Start again the nodes of a cluster that died (a crash tried by hand), as Kubernetes would."""
    dead = [node_id for node_id, node in enumerate(handle.nodes, start=1) if not node.running]
    for node_id in dead:
        print(f"node {node_id} exited ({handle.nodes[node_id - 1].poll()}); starting it again", flush=True)
    if not dead:
        return
    try:
        handle.start_nodes(dead, wait_timeout=60)
    except BrokerError as error:
        print(f"nodes {dead} did not all come back: {error}", file=sys.stderr, flush=True)
    else:
        print(f"node(s) {', '.join(map(str, dead))} back", flush=True)
