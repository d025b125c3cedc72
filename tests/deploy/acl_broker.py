"""A private Apache Kafka broker with SASL/SCRAM-SHA-512 and the StandardAuthorizer, for testing the ACLs of the
KafkaUser resources the way Strimzi applies them (principal ``User:<KafkaUser name>``, one ACL per operation).

It uses the project's Kafka jars (``runtime.broker.ensure_kafka_jars``) but its own configuration: an
unauthenticated PLAINTEXT listener whose ``User:ANONYMOUS`` is a super user (the test's admin, and the broker's
own inter-broker and controller traffic) and a SASL listener where every request is checked against the ACLs.
SCRAM credentials are written when the storage is formatted (KIP-900), before the broker starts.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from voicecall.runtime.broker import BrokerError, ensure_kafka_jars, free_port, wait_for_kafka


@dataclass
class AclBroker:
    admin_bootstrap: str  # PLAINTEXT, super user
    sasl_bootstrap: str  # SASL_PLAINTEXT + SCRAM-SHA-512, ACLs enforced
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError("java (17+) is needed for the ACL broker")
    return found


def start(state_dir: Path, users: dict[str, str], timeout: float = 90) -> AclBroker:
    """Start the broker with a SCRAM credential per ``users`` entry (name → password)."""
    lib = ensure_kafka_jars()
    plain, sasl, controller = free_port(), free_port(), free_port()
    while len({plain, sasl, controller}) < 3:
        sasl, controller = free_port(), free_port()
    data = state_dir / "data"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{plain},CLIENT://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{plain},CLIENT://127.0.0.1:{sasl},"
                                f"CONTROLLER://127.0.0.1:{controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CLIENT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": str(data),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log = state_dir / "console.log"
    jvm = [_java(), "-Djava.awt.headless=true", f"-Dkafka.logs.dir={state_dir}", "-cp", str(lib / "*")]
    cluster = "-"
    while cluster.startswith("-"):  # a Kafka Uuid as `kafka-storage random-uuid` prints it
        cluster = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
    scram = [arg for name, password in users.items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "--standalone", "--cluster-id", cluster,
                          "--config", str(config), *scram], capture_output=True, text=True, timeout=120)
    if fmt.returncode != 0:
        raise BrokerError(f"formatting the ACL broker failed:\n{fmt.stdout}{fmt.stderr}")
    with log.open("ab") as out:
        proc = subprocess.Popen([*jvm, "-Xms128m", "-Xmx384m", "kafka.Kafka", str(config)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    broker = AclBroker(f"127.0.0.1:{plain}", f"127.0.0.1:{sasl}", proc, log)
    try:
        wait_for_kafka(broker.admin_bootstrap, timeout=timeout, process=proc)
    except BrokerError as error:
        broker.stop()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BrokerError(f"the ACL broker did not come up: {error}\n{tail}") from None
    return broker
