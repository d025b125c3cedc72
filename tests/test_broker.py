"""The broker launcher: Apache Kafka from Maven Central, noida-db, external clusters."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from process_helpers import alive, taken_port
from voicecall.devenv.broker import (
    BrokerError,
    BrokerHandle,
    apache_kafka_version,
    ensure_kafka_jars,
    start_broker,
    wait_for_kafka,
)
from voicecall.devenv.broker.config import BrokerSettings
from voicecall.devenv.ports import free_port, port_is_free

pytestmark = pytest.mark.timeout(300)


def _ports(handle: BrokerHandle) -> list[int]:
    assert handle.state_dir is not None
    return sorted(int(v) for v in json.loads((handle.state_dir / "broker.json").read_text()).values())


async def _produce(bootstrap: str, topic: str, values: list[bytes], *, create: bool = True) -> None:
    if create:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
            deadline = time.monotonic() + 30
            while topic not in await admin.list_topics():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"k")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, want: int, **kwargs: Any) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, **kwargs)
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(r.value for r in records)
        if kwargs.get("group_id"):
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_apache_starts_and_stops_without_leftovers(tmp_path: Path) -> None:
    started = time.monotonic()
    handle = await asyncio.to_thread(start_broker, "apache", state_dir=tmp_path / "kafka")
    startup = time.monotonic() - started
    try:
        assert handle.kind == "apache"
        assert handle.bootstrap.startswith("127.0.0.1:")
        assert handle.pid is not None and alive(handle.pid)
        assert handle.log_path is not None and handle.log_path.parent.is_relative_to(tmp_path)
        ports = _ports(handle)
        assert handle.port in ports and len(ports) == 2  # client and controller listeners
        assert not any(port_is_free(p) for p in ports)
        await asyncio.to_thread(wait_for_kafka, handle.bootstrap, timeout=5)
        assert startup < 90
    finally:
        pid = handle.pid
        await asyncio.to_thread(handle.stop)
    assert pid is not None and not alive(pid)
    assert all(port_is_free(p) for p in ports)
    handle.stop()  # idempotent
    with pytest.raises(BrokerError):
        await asyncio.to_thread(wait_for_kafka, handle.bootstrap, timeout=1)


async def test_apache_restart_on_same_state_keeps_data(tmp_path: Path) -> None:
    state = tmp_path / "kafka"
    topic = f"restart.{uuid.uuid4().hex[:8]}"
    handle = await asyncio.to_thread(start_broker, "apache", state_dir=state)
    try:
        bootstrap = handle.bootstrap
        await _produce(bootstrap, topic, [b"before-1", b"before-2"])
        first_pid = handle.pid
        await asyncio.to_thread(handle.restart)  # stop + start: same port, same data
        assert handle.bootstrap == bootstrap and handle.pid != first_pid
        assert first_pid is not None and not alive(first_pid)
        assert await _consume(bootstrap, topic, 2) == [b"before-1", b"before-2"]
        await _produce(bootstrap, topic, [b"after"], create=False)

        # an outage: the broker is killed; a fresh start_broker on the same state_dir picks up port and data
        handle.kill()
        again = await asyncio.to_thread(start_broker, "apache", state_dir=state)
        try:
            assert again.bootstrap == bootstrap
            assert await _consume(bootstrap, topic, 3) == [b"before-1", b"before-2", b"after"]
        finally:
            await asyncio.to_thread(again.stop)
        assert again.pid is not None and not alive(again.pid)
    finally:
        await asyncio.to_thread(handle.stop)
    assert all(port_is_free(p) for p in _ports(handle))


async def test_session_broker_is_independent(kafka_bootstrap: str, broker_handle: BrokerHandle | None) -> None:
    # the session broker kept running while the tests above started and stopped their own
    await asyncio.to_thread(wait_for_kafka, kafka_bootstrap, timeout=10)
    external = await asyncio.to_thread(start_broker, "external", bootstrap=kafka_bootstrap, state_dir=Path("."))
    assert (external.kind, external.pid, external.bootstrap) == ("external", None, kafka_bootstrap)
    external.stop()  # a no-op for a cluster we did not start
    await asyncio.to_thread(wait_for_kafka, kafka_bootstrap, timeout=10)
    if broker_handle is not None:
        assert broker_handle.running and broker_handle.bootstrap == kafka_bootstrap


async def test_noida_broker(tmp_path: Path) -> None:
    # noida-db is the fallback broker for machines without java/mvn, installed from deploy/dev/noida-requirements.txt
    # `make` always installs it, so a missing package fails here rather than skipping.
    import noida_db  # noqa: F401
    topic = f"noida.{uuid.uuid4().hex[:8]}"
    handle = await asyncio.to_thread(start_broker, "noida", state_dir=tmp_path / "noida")
    try:
        assert handle.kind == "noida" and handle.pid is not None
        await _produce(handle.bootstrap, topic, [b"n1", b"n2", b"n3"])
        # noida rejects consumer session timeouts below 6000 ms
        got = await _consume(handle.bootstrap, topic, 3, group_id=f"g-{topic}", session_timeout_ms=10_000)
        assert got == [b"n1", b"n2", b"n3"]
    finally:
        pid = handle.pid
        await asyncio.to_thread(handle.stop)
    assert pid is not None and not alive(pid)
    assert port_is_free(handle.port)


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="unknown broker kind"):
        start_broker("kafka9", state_dir=tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerError, match=f"127.0.0.1:{port}"):
        start_broker("external", bootstrap=f"127.0.0.1:{port}", state_dir=tmp_path, wait_timeout=1)


def test_broker_cli_noida_runs_until_sigterm_and_leaves_nothing(tmp_path: Path) -> None:
    # `voicecall broker --broker noida`: the fallback of `make run` on a machine without java/mvn
    port = free_port()
    state = tmp_path / "state"
    env = {**os.environ, "VOICECALL_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    process = subprocess.Popen([sys.executable, "-m", "voicecall", "broker", "--broker", "noida", "--state-dir",
                                str(state)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"broker (noida) listening on 127.0.0.1:{port}" in line, line + process.stdout.read()
        wait_for_kafka(f"127.0.0.1:{port}", timeout=10)
        topic = f"cli.{uuid.uuid4().hex[:8]}"
        asyncio.run(_produce(f"127.0.0.1:{port}", topic, [b"a", b"b"]))
        got = asyncio.run(_consume(f"127.0.0.1:{port}", topic, 2, group_id=f"g-{topic}", session_timeout_ms=10_000))
        assert got == [b"a", b"b"]
        brokers = _processes_mentioning(str(state))
        assert brokers, "the noida-db process was not found"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0
    assert "broker stopped" in (process.stdout.read() if process.stdout else "")
    assert all(not alive(pid) for pid in brokers)
    assert port_is_free(port)


def test_broker_cli_taken_port_names_the_variable(tmp_path: Path) -> None:
    with taken_port() as port:
        result = subprocess.run([sys.executable, "-m", "voicecall", "broker", "--broker", "noida", "--state-dir",
                                 str(tmp_path)], env={**os.environ, "VOICECALL_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"VOICECALL_KAFKA_BOOTSTRAP=127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and "voicecall broker" not in cmdline and "-m voicecall" not in cmdline:
            found.append(int(entry.name))
    return found


def test_kafka_jars_fetched_once_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # a fresh machine: `make run` says why it is busy while Maven fetches the jars; later starts reuse them
    monkeypatch.setenv("VOICECALL_KAFKA_LIB", str(tmp_path / "lib"))
    lib = BrokerSettings().kafka_lib
    assert lib == tmp_path / "lib"
    assert ensure_kafka_jars(lib) == lib
    first = capsys.readouterr().err
    assert f"fetching the Kafka {apache_kafka_version()} jars from Maven Central" in first
    assert (lib / f"kafka_2.13-{apache_kafka_version()}.jar").is_file()
    assert ensure_kafka_jars(lib) == lib
    assert "fetching" not in capsys.readouterr().err  # cached (re-fetched only when the pom changes)


def test_auto_falls_back_to_noida_when_the_kafka_jars_cannot_be_had(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # java and mvn present, but Maven fails (offline machine): `auto` runs noida-db and says why
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    mvn = fake_bin / "mvn"
    mvn.write_text("#!/bin/sh\necho 'Could not transfer artifact (offline)' >&2\nexit 1\n")
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    handle = start_broker("auto", state_dir=tmp_path / "state", kafka_lib=tmp_path / "no-jars")
    try:
        assert handle.kind == "noida"
        wait_for_kafka(handle.bootstrap, timeout=10)
    finally:
        handle.stop()
    # why: Maven failed, and what it said (the dev CLIs print this in one line)
    assert handle.fallback is not None and "failed (exit 1)" in handle.fallback and "offline" in handle.fallback
    line = handle.fallback_line()
    assert line is not None and "\n" not in line and "offline" in line
    assert handle.pid is not None and not alive(handle.pid)


def test_cluster_nodes_are_voters_with_replication_three_and_min_isr_two(tmp_path: Path) -> None:
    from voicecall.devenv.broker.apache import Node, server_properties

    nodes = [Node(i, 19090 + i, 19190 + i, tmp_path / f"node-{i}") for i in (1, 2, 3)]
    props = server_properties(nodes[1], nodes, nodes[1].data_dir)
    assert props["node.id"] == "2" and props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19191,127.0.0.1:19192,127.0.0.1:19193"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19192"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "default.replication.factor"):
        assert props[key] == "3", key
    assert props["transaction.state.log.min.isr"] == props["min.insync.replicas"] == "2"
    single = server_properties(nodes[0], nodes[:1], nodes[0].data_dir)
    assert single["transaction.state.log.replication.factor"] == "1" and single["min.insync.replicas"] == "1"


def test_nodes_are_refused_where_they_cannot_be(tmp_path: Path) -> None:
    for kind in ("noida", "external"):
        with pytest.raises(BrokerError, match="only the apache broker runs a local cluster"):
            start_broker(kind, state_dir=tmp_path, nodes=3, bootstrap="127.0.0.1:1")
    with pytest.raises(BrokerError, match="at least one node"):
        start_broker("apache", state_dir=tmp_path, nodes=0)
    for bad in ("0", "10", "three"):
        result = subprocess.run([sys.executable, "-m", "voicecall", "broker", "--nodes", bad], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and "--nodes" in result.stderr and "1 to 9 nodes" in result.stderr, result
