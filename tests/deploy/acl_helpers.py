"""A private Apache Kafka broker with SASL/SCRAM-SHA-512 and the StandardAuthorizer, for testing the ACLs of the
KafkaUser resources the way Strimzi applies them (principal ``User:<KafkaUser name>``, one ACL per operation).

It is the development broker's node (``voicecall.devenv.broker.apache``: jars, properties, format, start) with
more listeners: an unauthenticated PLAINTEXT listener whose ``User:ANONYMOUS`` is a super user (the test's admin,
and the broker's own inter-broker and controller traffic) and a SASL listener where every request is checked
against the ACLs. SCRAM credentials are written when the storage is formatted (KIP-900), before the broker starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voicecall.devenv.broker import BrokerHandle, ensure_kafka_jars
from voicecall.devenv.broker.apache import (
    Node,
    format_storage,
    jvm_command,
    server_properties,
    write_properties,
)
from voicecall.devenv.broker.handle import await_ready, start_node
from voicecall.devenv.ports import free_port


@dataclass
class AclBroker:
    admin_bootstrap: str  # PLAINTEXT, super user
    sasl_bootstrap: str  # SASL_PLAINTEXT + SCRAM-SHA-512, ACLs enforced
    handle: BrokerHandle

    def stop(self) -> None:
        self.handle.stop()


def start(state_dir: Path, users: dict[str, str], timeout: float = 90) -> AclBroker:
    """Start the broker with a SCRAM credential per ``users`` entry (name → password)."""
    lib = ensure_kafka_jars()
    plain, sasl, controller = free_port(), free_port(), free_port()
    while len({plain, sasl, controller}) < 3:
        sasl, controller = free_port(), free_port()
    node = Node(1, plain, controller)
    props = server_properties(node, [node], state_dir / "data")
    listeners = f"{props['listeners']},CLIENT://127.0.0.1:{sasl}"
    props.update({
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": f"{props['listener.security.protocol.map']},CLIENT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.num.partitions": "3",
        "num.network.threads": "2",
        "num.io.threads": "2",
    })
    state_dir.mkdir(parents=True, exist_ok=True)
    config = write_properties(state_dir / "server.properties", props)
    console = state_dir / "console.log"
    scram = [arg for name, password in users.items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    format_storage(jvm_command(lib, state_dir), config, console, *scram)
    process = start_node("acl-kafka", [*jvm_command(lib, state_dir, "-Xms128m", "-Xmx384m"), "kafka.Kafka",
                                       str(config)], console=console, cwd=state_dir)
    handle = BrokerHandle(kind="apache-acl", bootstrap=f"127.0.0.1:{plain}", relaunch=None, state_dir=state_dir,
                          nodes=[process], log_path=state_dir / "server.log", console_path=console)
    await_ready(handle, "the ACL broker", timeout)
    return AclBroker(handle.bootstrap, f"127.0.0.1:{sasl}", handle)
