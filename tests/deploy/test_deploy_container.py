"""The container image for real: built by `make image` (no registry: a Debian base the project makes, a wheelhouse),
then run as the Kubernetes manifests run it — uid 10001, read-only root filesystem, no capabilities, the spool on a
writable volume — against the session's Kafka broker on 127.0.0.1 (`--network host`).

The ingress container is started twice on the same spool volume, like a pod restarted on its PersistentVolumeClaim:
first with Kafka unreachable (the pushes are answered 200 from the spool), then with Kafka (the spool drains, a live
push goes straight through); SIGTERM stops it with exit 0 and an empty spool. `voicecall dedup` from the same image
then passes the fee record to fee.unique once and drops its re-push.

Needs podman (or docker with a daemon) and mmdebstrap: `deploy/image/setup-host.sh` (run by .ci/run) installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import ROOT

from voicecall.devenv.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SIZE_GOAL_MB = 200
# gcc, cc, x86_64-linux-gnu-gcc-12, ld, as, make, … in any bin directory.
COMPILER = re.compile(r"(?:.*/)?s?bin/(?:[\w.]+-linux-gnu-)?(?:gcc|cc|c\+\+|g\+\+|clang|cpp|ld|as|make|tcc)"
                      r"(?:-[\d.]+)?$")
SPOOL = "/var/lib/voicecall/spool"
VOICECALL = Path(sys.executable).parent / "voicecall"  # the host's CLI reads the topics (`voicecall tail`)


def container_engine() -> str:
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    pytest.fail("the image tests need podman (or docker with a running daemon) and mmdebstrap: "
                "run deploy/image/setup-host.sh as root", pytrace=False)


@dataclass
class Image:
    engine: str
    id: str

    def cmd(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{self.engine} {' '.join(args)}: exit {out.returncode}\n{out.stderr[-3000:]}")
        return out


@dataclass
class Containers:
    """Containers started by one test: all run as Kubernetes runs the pods, all removed at the end."""

    image: Image
    prefix: str = field(default_factory=lambda: f"vctest-{uuid.uuid4().hex[:8]}")
    names: list[str] = field(default_factory=list)

    def k8s_flags(self) -> list[str]:
        # securityContext: runAsUser/runAsGroup 10001, readOnlyRootFilesystem, capabilities drop ALL,
        # allowPrivilegeEscalation false; /tmp is an emptyDir. podman would add tmpfs on /run and /var/tmp to a
        # read-only container, which a pod does not get.
        flags = ["--network", "host", "--user", "10001:10001", "--read-only", "--cap-drop", "ALL",
                 "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=64m"]
        return [*flags, "--read-only-tmpfs=false"] if self.image.engine == "podman" else flags

    def _options(self, args: list[str], env: dict[str, str], volumes: tuple[str, ...]) -> list[str]:
        name = f"{self.prefix}-{len(self.names)}-{args[0]}"
        self.names.append(name)
        return [*self.k8s_flags(), "--name", name, *(f"--env={key}={value}" for key, value in env.items()),
                *(f"--volume={volume}" for volume in volumes), self.image.id, *args]

    def run(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Runs a command to its end (like a Job)."""
        return self.image.cmd("run", *self._options(args, env, ()), check=False)

    def start(self, args: list[str], env: dict[str, str], volumes: tuple[str, ...] = ()) -> str:
        """Starts a long-running command (like a pod) and returns the container's name."""
        self.image.cmd("run", "--detach", *self._options(args, env, volumes))
        return self.names[-1]

    def running(self, name: str) -> bool:
        return self.image.cmd("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"

    def logs(self, name: str) -> str:
        out = self.image.cmd("logs", name, check=False)
        return out.stdout + out.stderr

    def stop(self, name: str, timeout: float = 60) -> int:
        """SIGTERM, as the kubelet sends it, and the exit code once the process has ended."""
        self.image.cmd("kill", "--signal", "TERM", name)
        return int(self.image.cmd("wait", name, timeout=timeout).stdout.strip().splitlines()[-1])

    def remove_all(self) -> None:
        for name in self.names:
            self.image.cmd("rm", "--force", name, check=False)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    engine = container_engine()
    log = tmp_path_factory.mktemp("image") / "build.log"
    env = dict(os.environ, ENGINE=engine, IMAGE="localhost/voicecall-pipeline:test", PY=sys.executable)
    with open(log, "w") as stderr:
        out = subprocess.run(["make", "--silent", "--no-print-directory", "-C", str(ROOT), "image"], env=env,
                             stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=1200)
    if out.returncode != 0:
        lines = log.read_text().splitlines()
        said = [line for line in lines if line.startswith(("build.sh:", "base.sh:"))]
        pytest.fail(f"{said[-1]} (log: {log})" if said else "make image failed:\n" + "\n".join(lines[-30:]),
                    pytrace=False)
    image_id = out.stdout.split()[-1]
    assert image_id.startswith("sha256:"), out.stdout
    return Image(engine, image_id)


@pytest.fixture
def containers(image: Image) -> Iterator[Containers]:
    started = Containers(image)
    try:
        yield started
    finally:
        started.remove_all()


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read() or b"null")


def wait_for(what: str, check: Callable[[], Any], alive: Callable[[], bool], logs: Callable[[], str],
             timeout: float = 60) -> Any:
    """Polls ``check`` until it returns something truthy; fails at once with the logs when the container died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (OSError, ValueError):  # not listening yet
            pass
        if not alive():
            raise AssertionError(f"the container ended while waiting for {what}:\n{logs()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{logs()[-3000:]}")


def tail(bootstrap: str, prefix: str, topic: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The first ``count`` records of a topic (fewer when the topic stays quiet for ``timeout`` seconds)."""
    env = dict(os.environ, VOICECALL_KAFKA_BOOTSTRAP=bootstrap, VOICECALL_TOPIC_PREFIX=prefix)
    out = subprocess.run([str(VOICECALL), "tail", topic, "--from-beginning", "--headers", "--max", str(count),
                          "--timeout", str(timeout)], env=env, capture_output=True, text=True, timeout=timeout + 60)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def log_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def huawei_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def status_push(session_id: str) -> dict[str, Any]:
    return {"eventType": "callout", "statusInfo": {"sessionId": session_id, "timestamp": huawei_time(datetime.now(UTC)),
                                                  "caller": "+8613800000022", "called": "+8613800000021"}}


def fee_push(session_id: str) -> dict[str, Any]:
    end = datetime.now(UTC).replace(microsecond=0)
    return {"eventType": "fee", "feeLst": [{
        "sessionId": session_id, "direction": 0, "spId": "sp", "appKey": "ak", "bindNum": "+8675566660000",
        "callerNum": "+8675566660000", "calleeNum": "+8613800000001", "serviceType": "002", "recordFlag": 0,
        "callOutAnswerTime": huawei_time(end - timedelta(seconds=40)),
        "fwdAnswerTime": huawei_time(end - timedelta(seconds=30)), "callEndTime": huawei_time(end)}]}


def test_the_image_runs_voicecall_as_uid_10001_and_holds_only_the_runtime(image: Image) -> None:
    help_out = image.cmd("run", "--rm", image.id, "--help")
    assert "ingress" in help_out.stdout and "dedup" in help_out.stdout, help_out.stdout
    inspected = json.loads(image.cmd("image", "inspect", image.id).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["voicecall"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9100/tcp"}

    # The filesystem as a container sees it, read from a stopped container's export.
    created = image.cmd("create", image.id).stdout.strip()
    try:
        export = subprocess.Popen([image.engine, "export", created], stdout=subprocess.PIPE)
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            paths = {m.name.removeprefix("./") for m in tar}
        assert export.wait(timeout=120) == 0
    finally:
        image.cmd("rm", "--force", created, check=False)
    found = [p for p in paths if COMPILER.match(p) or p.startswith(("usr/lib/gcc/", "usr/include/"))]
    assert not found, f"a compiler or headers in the image: {sorted(found)[:10]}"
    caches = [p for p in paths if "/.cache/" in f"/{p}/" or (p.startswith("var/cache/apt/") and p.endswith(".deb"))]
    assert not caches, f"caches in the image: {sorted(caches)[:10]}"
    sites = {m.group() for p in paths if (m := re.match(r"opt/voicecall/lib/python3\.\d+/site-packages/", p))}
    assert len(sites) == 1, sites
    site = sites.pop()
    assert not [p for p in paths if p.startswith((f"{site}pip/", f"{site}setuptools/"))], "pip left in the image"
    assert f"{site}voicecall/cli.py" in paths, "the package is installed in the virtualenv"
    assert f"{site}opentelemetry/sdk/trace/__init__.py" in paths, "the tracing extra is installed (OTEL_* turns it on)"
    sources = [p for p in paths if p.split("/")[0] == "src" or p.endswith(("pyproject.toml", ".egg-link"))
               or "__editable__" in p or "services/voicecall" in p or p.startswith("tests/")]
    assert not sources, f"sources in the image: {sorted(sources)[:10]}"
    megabytes = inspected["Size"] / 1e6  # unpacked, as `podman images` / `docker images` show it
    assert megabytes <= SIZE_GOAL_MB, f"the image takes {megabytes:.0f} MB (goal ≤ {SIZE_GOAL_MB} MB)"


def test_ingress_and_dedup_run_as_kubernetes_runs_them(image: Image, containers: Containers, kafka_bootstrap: str,
                                                       tmp_path: Path) -> None:
    prefix = f"img{uuid.uuid4().hex[:8]}."
    kafka = {"VOICECALL_KAFKA_BOOTSTRAP": kafka_bootstrap, "VOICECALL_TOPIC_PREFIX": prefix}
    single_broker = {"VOICECALL_TOPIC_PARTITIONS": "3", "VOICECALL_TOPIC_REPLICATION": "1",
                     "VOICECALL_TOPIC_MIN_INSYNC": "1"}
    created = containers.run(["topics", "create"], {**kafka, **single_broker})
    assert created.returncode == 0, created.stdout + created.stderr

    # The spool volume: writable by the pod's group (fsGroup 10001), not by the image's files.
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ingress_env = {"VOICECALL_INGRESS_HOST": "127.0.0.1", "VOICECALL_INGRESS_PORT": str(port),
                   "VOICECALL_INGRESS_SPOOL_DIR": SPOOL}
    call = f"{uuid.uuid4().hex}@callenabler245.huaweicaas.com"
    fee = fee_push(call)

    def start_ingress(bootstrap: str) -> str:
        return containers.start(["ingress"], {**kafka, **ingress_env, "VOICECALL_KAFKA_BOOTSTRAP": bootstrap},
                                (f"{spool}:{SPOOL}",))

    def ready(broker: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            status, body = http("GET", f"{url}/readyz")
            return body if status == 200 and body["broker"] == broker else None
        return check

    # 1. Kafka unreachable: the pushes are answered 200 once fsync'd to the spool on the volume.
    first = start_ingress(f"127.0.0.1:{free_port()}")
    wait_for("the ingress", ready("down"), lambda: containers.running(first), lambda: containers.logs(first))
    assert http("POST", f"{url}/notify/status", json.dumps(status_push(f"a-{call}")).encode()) == \
        (200, {"resultcode": "0", "resultdesc": "Success"})
    assert http("POST", f"{url}/notify/fee", json.dumps(fee).encode())[0] == 200
    state = http("GET", f"{url}/readyz")[1]
    assert state["spool"]["usable"] and state["spool"]["entries"] == 2, state
    assert containers.stop(first) == 0, containers.logs(first)[-3000:]
    assert [e["spool_entries"] for e in log_events(containers.logs(first)) if e.get("event") == "ingress stopped"] \
        == [2]

    # 2. Restarted on the same volume with Kafka: the spool drains; a live push (the platform re-pushing the CDR).
    second = start_ingress(kafka_bootstrap)
    wait_for("the ingress with Kafka", ready("up"), lambda: containers.running(second),
             lambda: containers.logs(second))
    assert http("POST", f"{url}/notify/status", json.dumps(status_push(f"b-{call}")).encode())[0] == 200
    assert http("POST", f"{url}/notify/fee", json.dumps(fee).encode())[0] == 200
    statuses = tail(kafka_bootstrap, prefix, "status.raw", 2)
    assert sorted(r["key"] for r in statuses) == [f"a-{call}", f"b-{call}"]
    assert all(r["headers"]["ce_type"] == "com.huaweicloud.voicecall.status.callout" for r in statuses)
    fees = tail(kafka_bootstrap, prefix, "fee.raw", 2)
    assert [r["value"] for r in fees] == [fee["feeLst"][0]] * 2
    wait_for("the spool to drain", lambda: http("GET", f"{url}/readyz")[1]["spool"]["entries"] == 0,
             lambda: containers.running(second), lambda: containers.logs(second))
    assert containers.stop(second) == 0, containers.logs(second)[-3000:]
    events = log_events(containers.logs(second))
    assert [e["spool_entries"] for e in events if e.get("event") == "ingress stopped"] == [0]
    assert any(e.get("event") == "stopped cleanly" for e in events)
    assert not [e for e in events if e.get("level") == "error"], events
    leftover = sum(p.stat().st_size for p in spool.rglob("*.seg"))
    assert leftover == 0, f"{leftover} bytes of spool segments left on the volume"

    # 3. dedup from the same image: the CDR reaches fee.unique once; its re-push is dropped.
    metrics = free_port()
    dedup = containers.start(["dedup"], {**kafka, "VOICECALL_METRICS_HOST": "127.0.0.1",
                                         "VOICECALL_METRICS_PORT": str(metrics)})

    def counted() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return "voicecall_dedup_unique_total 1.0" in text and "voicecall_dedup_duplicates_total 1.0" in text

    wait_for("dedup to pass one copy and drop the other", counted, lambda: containers.running(dedup),
             lambda: containers.logs(dedup), timeout=90)
    assert containers.stop(dedup) == 0, containers.logs(dedup)[-3000:]
    unique = tail(kafka_bootstrap, prefix, "fee.unique", 2, timeout=5)
    assert [(r["key"], r["value"]) for r in unique] == [(call, fee["feeLst"][0])]
