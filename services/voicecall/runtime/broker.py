"""Local Kafka brokers for development and tests: a real Apache Kafka, noida-db, or an external cluster.

``start_broker(kind, state_dir=...)`` returns a :class:`BrokerHandle` once a real Kafka Metadata request to the
broker has succeeded:

``"apache"``
    Apache Kafka (KRaft, one combined broker+controller node) assembled from Maven Central with
    ``deploy/dev/kafka/pom.xml``. The jars are fetched once into ``deploy/dev/kafka/lib/`` (or
    ``$VOICECALL_KAFKA_LIB``) and re-fetched only when the pom changes. The version is the one in the pom
    (4.4.0): the newest release served, and tests/test_kafka_compat.py shows the project's aiokafka works against
    it (idempotent and transactional producers, groups, offsets_for_times, the admin calls we use) although
    Kafka 4 dropped the oldest protocol versions (KIP-896).
``"noida"``
    The Kafka-protocol broker binary shipped in the ``noida-db`` wheel (deploy/dev/noida-requirements.txt).
    It rejects consumer ``session_timeout_ms`` below 6000.
``"external"``
    An already running cluster (``bootstrap`` or ``$VOICECALL_KAFKA_BOOTSTRAP``); ``stop()`` does nothing.
``"auto"``
    ``"apache"`` when ``java`` and ``mvn`` are on PATH and the jars can be had, otherwise ``"noida"`` (said on
    stderr).

Everything a broker writes lives under ``state_dir``: starting again on the same ``state_dir`` (``restart()``,
or a new ``start_broker`` call) keeps the data and, unless another port is asked for, the port.
The module imports nothing beyond the standard library.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "BrokerError",
    "BrokerHandle",
    "apache_kafka_version",
    "ensure_kafka_jars",
    "free_port",
    "port_is_free",
    "start_broker",
    "wait_for_kafka",
]

KINDS = ("auto", "apache", "noida", "external")
LOG_TAIL_LINES = 40

_HERE = Path(__file__).resolve()


class BrokerError(RuntimeError):
    """A broker could not be prepared, started or reached."""


# --------------------------------------------------------------------------------------------------------------
# The handle


class BrokerHandle:
    """A running broker. ``stop()`` is idempotent; ``restart()`` starts it again on the same state and port."""

    def __init__(
        self,
        *,
        kind: str,
        bootstrap: str,
        state_dir: Path | None,
        log_path: Path | None,
        process: subprocess.Popen[bytes] | None = None,
        console_path: Path | None = None,
    ) -> None:
        self.kind = kind
        self.bootstrap = bootstrap
        self.state_dir = state_dir
        self.log_path = log_path
        self.console_path = console_path
        self._process = process
        if process is not None:
            _live_handles.add(self)

    def __repr__(self) -> str:
        return f"BrokerHandle(kind={self.kind!r}, bootstrap={self.bootstrap!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The broker process id (``None`` for an external cluster)."""
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        if self.kind == "external":
            return True
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the broker's process group, wait up to ``timeout`` seconds, then SIGKILL it. Idempotent."""
        proc = self._process
        if proc is None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        # stragglers of the group (none expected: both brokers are a single process)
        _signal_group(proc, signal.SIGKILL)
        _live_handles.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for outage tests). ``restart()`` brings it back."""
        proc = self._process
        if proc is None:
            return
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        _live_handles.discard(self)

    def restart(self, *, stop_timeout: float = 20, wait_timeout: float = 90) -> None:
        """Stop (if running) and start the same broker again: same kind, state_dir and port; data is kept."""
        if self.kind == "external":
            wait_for_kafka(self.bootstrap, timeout=wait_timeout)
            return
        assert self.state_dir is not None
        self.stop(stop_timeout)
        fresh = start_broker(self.kind, port=self.port, state_dir=self.state_dir, wait_timeout=wait_timeout)
        _live_handles.discard(fresh)
        self.__dict__.update(fresh.__dict__)
        _live_handles.add(self)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _describe_logs([p for p in (self.console_path, self.log_path) if p is not None], lines)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The broker leads its own process group (start_new_session); after it is reaped its pid may be reused,
    # so only the group of a process we have not yet reaped is signalled.
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


_live_handles: weakref.WeakSet[BrokerHandle] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """A process that exits without stopping its brokers does not leave them running."""
    for handle in list(_live_handles):
        with contextlib.suppress(Exception):
            handle.stop(timeout=10)


# --------------------------------------------------------------------------------------------------------------
# Entry point


def start_broker(
    kind: str = "auto",
    *,
    port: int | None = None,
    state_dir: Path,
    bootstrap: str | None = None,
    wait_timeout: float = 90,
) -> BrokerHandle:
    """Start (or, for ``"external"``, reach) a Kafka broker and return once it answers Metadata requests.

    ``port`` is the client (PLAINTEXT) port on 127.0.0.1; by default the port of the previous run on this
    ``state_dir``, else a free one. Raises :class:`BrokerError` with the tail of the broker's log on failure.
    """
    if kind not in KINDS:
        raise BrokerError(f"unknown broker kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "apache" if shutil.which("java") and shutil.which("mvn") else "noida"
        if kind == "apache":
            try:  # the jars (Maven Central, once) and a JVM: without them, fall back rather than fail
                ensure_kafka_jars()
                _java()
            except BrokerError as exc:
                print(f"auto broker: Apache Kafka is not available ({exc}); using noida-db instead",
                      file=sys.stderr, flush=True)
                kind = "noida"
    if kind == "external":
        address = bootstrap or os.environ.get("VOICECALL_KAFKA_BOOTSTRAP")
        if not address:
            raise BrokerError("external broker: no bootstrap given and VOICECALL_KAFKA_BOOTSTRAP is not set")
        wait_for_kafka(address, timeout=wait_timeout)
        return BrokerHandle(kind="external", bootstrap=address, state_dir=None, log_path=None)
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if kind == "apache":
        return _start_apache(port=port, state_dir=state_dir, wait_timeout=wait_timeout)
    return _start_noida(port=port, state_dir=state_dir, wait_timeout=wait_timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _load_ports(state_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((state_dir / "broker.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if isinstance(v, int)}


def _save_ports(state_dir: Path, ports: dict[str, int]) -> None:
    tmp = state_dir / "broker.json.tmp"
    tmp.write_text(json.dumps(ports, indent=2) + "\n")
    tmp.replace(state_dir / "broker.json")


def _spawn(argv: Sequence[str], *, console: Path, cwd: Path) -> subprocess.Popen[bytes]:
    console.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes]
    with console.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            start_new_session=True,
        )


def _await_ready(handle: BrokerHandle, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    try:
        wait_for_kafka(handle.bootstrap, timeout=timeout, process=proc)
    except BrokerError as exc:
        handle.stop(timeout=10)
        raise BrokerError(f"{what} on {handle.bootstrap} did not come up: {exc}\n{handle.log_tail()}") from None


# --------------------------------------------------------------------------------------------------------------
# Apache Kafka


def _find_kafka_dir() -> Path | None:
    """deploy/dev/kafka of the source tree this module lives in (or of the current directory)."""
    for base in (*_HERE.parents, Path.cwd(), *Path.cwd().parents):
        candidate = base / "deploy" / "dev" / "kafka"
        if (candidate / "pom.xml").is_file():
            return candidate
    return None


def _kafka_lib_dir(kafka_dir: Path | None) -> Path:
    env = os.environ.get("VOICECALL_KAFKA_LIB")
    if env:
        return Path(env).expanduser().resolve()
    if kafka_dir is None:
        raise BrokerError(
            "apache broker: deploy/dev/kafka/pom.xml not found (run from the source tree) and VOICECALL_KAFKA_LIB "
            "is not set"
        )
    return kafka_dir / "lib"


def apache_kafka_version() -> str | None:
    """The Kafka version pinned in deploy/dev/kafka/pom.xml."""
    kafka_dir = _find_kafka_dir()
    if kafka_dir is None:
        return None
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", (kafka_dir / "pom.xml").read_text())
    return m.group(1).strip() if m else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_kafka_jars() -> Path:
    """The directory holding the Apache Kafka classpath; runs Maven once (again only when the pom changed)."""
    kafka_dir = _find_kafka_dir()
    lib = _kafka_lib_dir(kafka_dir)
    stamp = lib / ".pom.sha256"
    if kafka_dir is None:  # only VOICECALL_KAFKA_LIB: use what is there
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"apache broker: no kafka_2.13 jar in VOICECALL_KAFKA_LIB={lib} and no pom to fetch it")
        return lib
    pom = kafka_dir / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    with _file_lock(lib.parent / f".{lib.name}.lock"):  # concurrent test sessions fetch once
        if any(lib.glob("kafka_2.13-*.jar")) and stamp.is_file() and stamp.read_text().strip() == digest:
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("apache broker: `mvn` is not on PATH (needed once to fetch the Kafka jars)")
        print(f"apache broker: fetching the Kafka {apache_kafka_version() or ''} jars from Maven Central into {lib} "
              "(once; this can take a few minutes)", file=sys.stderr, flush=True)
        lib.mkdir(parents=True, exist_ok=True)
        for old in lib.glob("*.jar"):
            old.unlink()
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={lib}"]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"apache broker: `{' '.join(cmd)}` timed out") from None
        if res.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise BrokerError(f"apache broker: `{' '.join(cmd)}` failed (exit {res.returncode}):\n{tail}")
        stamp.write_text(digest + "\n")
    return lib


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("apache broker: `java` (17 or newer) is not on PATH and JAVA_HOME is not set")
    return java


def _random_cluster_id() -> str:
    """A Kafka Uuid as ``kafka-storage random-uuid`` prints it (url-safe base64, no padding, no leading '-')."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _server_properties(*, port: int, controller_port: int, data_dir: Path) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # after a crash (kill -9) the restarted broker waits for its previous registration's session to expire
        # before it is unfenced: keep that short (defaults 9000/2000) so outage tests recover in seconds
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "log.segment.bytes": str(16 * 1024 * 1024),
        "offsets.topic.segment.bytes": str(16 * 1024 * 1024),
        "transaction.state.log.segment.bytes": str(16 * 1024 * 1024),
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
        "num.network.threads": "3",
        "num.io.threads": "4",
    }
    lines = ["# generated by voicecall.runtime.broker; rewritten on every start"]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def _start_apache(*, port: int | None, state_dir: Path, wait_timeout: float) -> BrokerHandle:
    started = time.monotonic()
    lib = ensure_kafka_jars()
    java = _java()
    saved = _load_ports(state_dir)
    port = port or saved.get("port") or free_port()
    # The controller endpoint is part of the formatted (dynamic) quorum: it never changes for a state_dir.
    controller_port = saved.get("controller_port") or free_port()
    while controller_port == port:
        controller_port = free_port()
    for p, what in ((port, "client"), (controller_port, "controller")):
        if not port_is_free(p):
            raise BrokerError(f"apache broker: {what} port 127.0.0.1:{p} is already in use")
    _save_ports(state_dir, {"port": port, "controller_port": controller_port})

    data_dir = state_dir / "kafka-data"
    logs_dir = state_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    props_path = state_dir / "server.properties"
    props_path.write_text(_server_properties(port=port, controller_port=controller_port, data_dir=data_dir))
    console = logs_dir / "console.log"
    server_log = logs_dir / "server.log"

    kafka_dir = _find_kafka_dir()
    jvm = [java, "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs_dir}"]
    if kafka_dir is not None and (kafka_dir / "log4j2.properties").is_file():
        jvm.append(f"-Dlog4j2.configurationFile={kafka_dir / 'log4j2.properties'}")
    classpath = ["-cp", str(lib / "*")]

    if not (data_dir / "meta.properties").is_file():  # first start on this state_dir: format the storage
        cmd = [*jvm, *classpath, "kafka.tools.StorageTool", "format", "--standalone",
               "--cluster-id", _random_cluster_id(), "--config", str(props_path)]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise BrokerError("apache broker: formatting the storage timed out") from None
        with console.open("a") as f:
            f.write(f"--- format: {' '.join(cmd)}\n{res.stdout}{res.stderr}")
        if res.returncode != 0:
            raise BrokerError(
                f"apache broker: `kafka.tools.StorageTool format` failed (exit {res.returncode}):\n"
                + "\n".join((res.stdout + res.stderr).splitlines()[-LOG_TAIL_LINES:])
            )

    proc = _spawn([*jvm, "-Xms256m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", *classpath, "kafka.Kafka",
                   str(props_path)], console=console, cwd=state_dir)
    handle = BrokerHandle(kind="apache", bootstrap=f"127.0.0.1:{port}", state_dir=state_dir, log_path=server_log,
                          process=proc, console_path=console)
    _await_ready(handle, proc, "Apache Kafka", max(1.0, wait_timeout - (time.monotonic() - started)))
    return handle


# --------------------------------------------------------------------------------------------------------------
# noida-db


def _noida_binary() -> Path:
    from importlib.resources import files

    try:
        root = files("noida_db")
    except ModuleNotFoundError:
        raise BrokerError(
            "noida broker: the noida-db package is not installed "
            "(pip install -r deploy/dev/noida-requirements.txt)"
        ) from None
    name = "noida-db.exe" if os.name == "nt" else "noida-db"
    binary = root.joinpath(name)
    if not binary.is_file():
        raise BrokerError(f"noida broker: binary {name} not found in the noida_db package ({root})")
    path = Path(str(binary))
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def _start_noida(*, port: int | None, state_dir: Path, wait_timeout: float) -> BrokerHandle:
    started = time.monotonic()
    binary = _noida_binary()
    saved = _load_ports(state_dir)
    port = port or saved.get("port") or free_port()
    if not port_is_free(port):
        raise BrokerError(f"noida broker: port 127.0.0.1:{port} is already in use")
    _save_ports(state_dir, {"port": port})
    data_dir = state_dir / "noida-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    console = state_dir / "logs" / "noida.log"
    proc = _spawn([str(binary), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", str(port),
                   "--data-dir", str(data_dir)], console=console, cwd=state_dir)
    handle = BrokerHandle(kind="noida", bootstrap=f"127.0.0.1:{port}", state_dir=state_dir, log_path=console,
                          process=proc)
    _await_ready(handle, proc, "noida-db", max(1.0, wait_timeout - (time.monotonic() - started)))
    return handle


# --------------------------------------------------------------------------------------------------------------
# Readiness: ApiVersions, then Metadata, over a raw socket (no client library needed)

_API_METADATA = 3
_API_VERSIONS = 18


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"voicecall-broker-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise BrokerError("Kafka response with a wrong correlation id")
    return response[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _probe(host: str, port: int, timeout: float) -> int:
    """One ApiVersions + Metadata round trip; returns the number of brokers the cluster reports."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _request(sock, _API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack(">hi", body[:6])
        if error != 0:
            raise BrokerError(f"ApiVersions error code {error}")
        versions = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
            versions[key] = (lo, hi)
        if _API_METADATA not in versions:
            raise BrokerError("the broker does not support Metadata requests")
        lo, hi = versions[_API_METADATA]
        # v4..v8 share the non-flexible encoding handled here; Kafka 4 supports 0..13, noida its own range
        version = max(lo, min(hi, 4))
        if not 1 <= version <= 8:
            raise BrokerError(f"no Metadata version this probe speaks (broker offers v{lo}..v{hi})")
        req = struct.pack(">i", -1 if version >= 1 else 0)  # all topics (null array)
        if version >= 4:
            req += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            req += b"\x00\x00"  # include cluster/topic authorized operations
        body = _request(sock, _API_METADATA, version, 2, req)
        offset = 4 if version >= 3 else 0  # throttle_time_ms
        return int(struct.unpack(">i", body[offset: offset + 4])[0])


def wait_for_kafka(
    bootstrap: str, *, timeout: float = 90, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until a broker of ``bootstrap`` ("host:port[,host:port...]") answers a Metadata request listing
    at least one broker. Raises :class:`BrokerError` on timeout or when ``process`` exits first."""
    addresses: list[tuple[str, int]] = []
    for part in bootstrap.split(","):
        host, _, port_text = part.strip().rpartition(":")
        if not host or not port_text.isdigit():
            raise BrokerError(f"bad bootstrap address {part!r} (expected host:port)")
        addresses.append((host.strip("[]"), int(port_text)))
    deadline = time.monotonic() + timeout
    last: str = "not tried"
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the broker process exited with code {process.returncode}")
        for host, port in addresses:
            try:
                if _probe(host, port, timeout=5) > 0:
                    return
                last = "Metadata lists no brokers yet"
            except (OSError, BrokerError, struct.error) as exc:
                last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka answer from {bootstrap} within {timeout:.0f}s (last: {last})")
        time.sleep(0.2)


def _describe_logs(paths: Sequence[Path], lines: int) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            parts.append(f"--- last lines of {path}:\n" + "\n".join(text))
    return "\n".join(parts) if parts else "(the broker wrote no log)"
