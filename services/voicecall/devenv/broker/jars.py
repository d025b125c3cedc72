"""The Apache Kafka classpath: fetched once from Maven Central with ``deploy/dev/kafka/pom.xml``.

The jars land in ``deploy/dev/kafka/lib/`` (or the directory given, ``VOICECALL_KAFKA_LIB``) and are fetched again
only when the pom changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from voicecall.devenv.broker.probe import BrokerError

_HERE = Path(__file__).resolve()
_TAIL_LINES = 40


def find_kafka_dir() -> Path | None:
    """deploy/dev/kafka of the source tree this module lives in (or of the current directory)."""
    for base in (*_HERE.parents, Path.cwd(), *Path.cwd().parents):
        candidate = base / "deploy" / "dev" / "kafka"
        if (candidate / "pom.xml").is_file():
            return candidate
    return None


def apache_kafka_version() -> str | None:
    """The Kafka version pinned in deploy/dev/kafka/pom.xml."""
    kafka_dir = find_kafka_dir()
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


def ensure_kafka_jars(lib: Path | None = None) -> Path:
    """The directory holding the Apache Kafka classpath (``lib``, by default deploy/dev/kafka/lib); runs Maven
    once, and again only when the pom changed."""
    kafka_dir = find_kafka_dir()
    if lib is not None:
        lib = lib.expanduser().resolve()
    elif kafka_dir is not None:
        lib = kafka_dir / "lib"
    else:
        raise BrokerError("apache broker: deploy/dev/kafka/pom.xml not found (run from the source tree) and "
                          "VOICECALL_KAFKA_LIB is not set")
    if kafka_dir is None:  # only a jar directory: use what is there
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"apache broker: no kafka_2.13 jar in VOICECALL_KAFKA_LIB={lib} and no pom to fetch it")
        return lib
    stamp = lib / ".pom.sha256"
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
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-_TAIL_LINES:])
            raise BrokerError(f"apache broker: `{' '.join(cmd)}` failed (exit {res.returncode}):\n{tail}")
        stamp.write_text(digest + "\n")
    return lib
