"""Helpers of the failover tests: the services as real subprocesses on the 3-node cluster, a load of pushes that
remembers what was answered 200, reading topics back with read_committed, partition leaders and ISRs, and what
the services' JSON logs say (who owns which partitions since when, how many lines of which level)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient

import kafka_helpers
from voicecall import topics
from voicecall.devenv.ports import free_port

PARTITIONS = 6


def service_env(bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    return kafka_helpers.service_env(topics.TopicSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix),
                                     VOICECALL_BATCH_TIME="0.05", **extra)


class Service:
    """One ``voicecall <command>`` subprocess; its output (JSON log lines) is appended to ``log``."""

    def __init__(self, command: str, env: dict[str, str], log: Path, name: str | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.command = command
        self.args = args
        self.name = name or command
        self.env = env
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0  # wall clock, like the log's timestamps

    async def start(self) -> Service:
        self.started_at = time.time()
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - a local log file, opened once per start
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voicecall", self.command, *self.args, env=self.env, stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL)
        return self

    def kill(self) -> float:
        """SIGKILL; returns the wall-clock time of the kill (log timestamps are wall-clock)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return time.time()

    async def stop(self, timeout: float = 40) -> int | None:
        """SIGTERM and the exit status (None when it had to be killed)."""
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None

    def entries(self) -> list[dict[str, Any]]:
        """Every line of the log: JSON objects, anything else as ``{"level": "raw", "event": line}``."""
        result = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            result.append(entry if isinstance(entry, dict) else {"level": "raw", "event": line})
        return result

    def levels(self, since: float = 0.0) -> Counter[str]:
        """Lines per level since ``since``; lines that are not JSON (a traceback's) count as "raw" whenever."""
        return Counter(e.get("level", "?") for e in self.entries() if stamp(e) >= since or e.get("level") == "raw")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def stamp(entry: dict[str, Any]) -> float:
    """The wall-clock time of a JSON log entry (0 for a line without one)."""
    text = entry.get("timestamp")
    if not isinstance(text, str):
        return 0.0
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ownership(service: Service) -> tuple[set[int], set[int]]:
    """(ready, pending) input partitions of a stage instance since its last start, replayed from its log."""
    ready: set[int] = set()
    pending: set[int] = set()
    for entry in service.entries():
        if stamp(entry) < service.started_at:
            continue
        event = entry.get("event")
        if event == "partitions revoked":
            ready -= set(entry["partitions"])
            pending -= set(entry["partitions"])
        elif event == "partitions assigned":
            kept = set(entry.get("kept", []))
            ready |= kept
            pending |= set(entry["partitions"]) - ready
        elif event == "partitions ready":
            done = {int(p) for p in entry["partitions"]}
            ready |= done
            pending -= done
    return ready, pending


def ready_at(services: Service | Iterable[Service], partitions: set[int], since: float) -> float | None:
    """The first time after ``since`` at which the logs say ``partitions`` are all ready again (on any of
    ``services``): ready after a preparation, or kept through a rebalance."""
    events: list[tuple[float, set[int]]] = []
    for service in [services] if isinstance(services, Service) else services:
        for entry in service.entries():
            if stamp(entry) < since:
                continue
            if entry.get("event") == "partitions ready":
                events.append((stamp(entry), {int(p) for p in entry["partitions"]}))
            elif entry.get("event") == "partitions assigned" and entry.get("kept"):
                events.append((stamp(entry), set(entry["kept"])))
    seen: set[int] = set()
    for at, done in sorted(events, key=lambda event: event[0]):
        seen |= done
        if partitions <= seen:
            return at
    return None


def pauses(service: Service, since: float) -> list[float]:
    """For each rebalance of a stage instance after ``since``: how long the partitions it owned before and still
    owns after were not processed (from the revocation until they were kept or ready again)."""
    result = []
    entries = [e for e in service.entries() if stamp(e) >= since]
    for i, entry in enumerate(entries):
        if entry.get("event") != "partitions revoked":
            continue
        revoked = set(entry["partitions"])
        assigned = next((e for e in entries[i + 1:] if e.get("event") == "partitions assigned"), None)
        if assigned is None:
            continue
        stayed = revoked & set(assigned["partitions"])
        if stayed:
            at = ready_at(service, stayed, stamp(assigned))
            if at is not None:
                result.append(at - stamp(entry))
    return result


async def wait_owned(stages: Iterable[Service], partitions: int = PARTITIONS, timeout: float = 60) -> None:
    """Until the instances together own every input partition, each instance some, each ready, none pending."""
    stages = list(stages)
    deadline = time.monotonic() + timeout
    while True:
        owned = [ownership(s) for s in stages]
        ready = set().union(*(r for r, _ in owned))
        pending = set().union(*(p for _, p in owned))
        if ready == set(range(partitions)) and not pending and all(r for r, _ in owned):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"partitions not all ready: ready {sorted(ready)}, pending {sorted(pending)}\n"
                                 + "\n".join(f"--- {s.name}:\n{s.tail()}" for s in stages))
        await asyncio.sleep(0.2)


@dataclass
class Pipeline:
    """Ingress, dedup and billing instances on one topic prefix of the cluster."""

    bootstrap: str
    prefix: str
    work: Path
    ingress: Service
    url: str
    dedup: list[Service]
    billing: list[Service]
    tail: Service  # `voicecall tail fee.raw`: a command line tool watching the topic through it all

    @property
    def stages(self) -> list[Service]:
        return [*self.dedup, *self.billing]

    @property
    def everything(self) -> list[Service]:
        return [self.ingress, *self.stages, self.tail]

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(s.stop() for s in self.everything))
        return {s.name: code for s, code in zip(self.everything, codes, strict=True)}


async def create_topics(bootstrap: str, prefix: str) -> None:
    """Every topic with 6 partitions, replication 3 and min ISR 2 (the defaults, on a cluster of three)."""
    await topics.create(topics.TopicSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix,
                                             topic_partitions=PARTITIONS))


def ingress_service(bootstrap: str, prefix: str, work: Path, name: str = "ingress", **extra: str
                    ) -> tuple[Service, str]:
    port = free_port()
    env = service_env(bootstrap, prefix, VOICECALL_INGRESS_HOST="127.0.0.1", VOICECALL_INGRESS_PORT=str(port),
                      VOICECALL_INGRESS_SPOOL_DIR=str(work / f"{name}-spool"), **extra)
    return Service("ingress", env, work / f"{name}.log", name), f"http://127.0.0.1:{port}"


async def start_pipeline(bootstrap: str, work: Path, *, dedup: int = 2, billing: int = 2, **stage_env: str
                         ) -> Pipeline:
    prefix = f"f{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, prefix)
    ingress, url = ingress_service(bootstrap, prefix, work)
    env = service_env(bootstrap, prefix, **stage_env)
    pipeline = Pipeline(bootstrap, prefix, work, ingress, url,
                        [Service("dedup", env, work / f"dedup-{i}.log", f"dedup-{i}") for i in range(dedup)],
                        [Service("billing", env, work / f"billing-{i}.log", f"billing-{i}") for i in range(billing)],
                        Service("tail", env, work / "tail.log", args=("fee.raw",)))
    await asyncio.gather(*(s.start() for s in pipeline.everything))
    await wait_ingress(url)
    await wait_owned(pipeline.dedup)
    await wait_owned(pipeline.billing)
    return pipeline


async def readyz(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return dict(await response.json())


async def wait_ingress(url: str, broker: str = "up", timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await readyz(url)
            if last.get("broker") == broker:
                return dict(last)
        except (aiohttp.ClientError, OSError) as error:
            last = error
        await asyncio.sleep(0.2)
    raise AssertionError(f"ingress at {url} not {broker}: {last}")


def _time(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - seconds_ago))


def fee_push(tag: str, n: int = 3) -> dict[str, Any]:
    """A fee push of ``n`` voice-callback CDRs whose sessionIds start with ``tag``, ended a minute ago."""
    return {"eventType": "fee", "feeLst": [
        {"sessionId": f"{tag}-{i}@callenabler245.huaweicaas.com", "direction": 0, "spId": "sp", "appKey": "ak",
         "bindNum": "+8675566660000", "callerNum": "+8675566660000", "calleeNum": "+8613800000001",
         "callOutAnswerTime": _time(120), "fwdAnswerTime": _time(100), "callEndTime": _time(60), "recordFlag": 0,
         "serviceType": "002"}
        for i in range(n)]}


def status_push(session_id: str) -> dict[str, Any]:
    return {"eventType": "callout", "statusInfo": {"sessionId": session_id, "timestamp": _time(0),
                                                   "caller": "+8613800000022", "called": "+8613800000021"}}


@dataclass
class Load:
    """Clients posting pushes in a loop: fee pushes of new CDRs, every fifth a re-push of an earlier one (the
    platform's retry), and status pushes. Remembers every sessionId sent and those answered 200."""

    url: str
    clients: int = 3
    pause: float = 0.02
    fee_ok: set[str] = field(default_factory=set)  # sessionIds of CDRs in a push answered 200
    fee_sent: set[str] = field(default_factory=set)
    status_ok: set[str] = field(default_factory=set)
    codes: Counter[int | str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Load:
        self.tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]
        return self

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)

    async def _client(self, n: int) -> None:
        earlier: list[dict[str, Any]] = []
        i = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not self.stopping.is_set():
                i += 1
                if i % 4 == 0:
                    path, push = "status", status_push(f"st-{n}-{i}")
                elif i % 5 == 0 and earlier:
                    path, push = "fee", earlier[i % len(earlier)]
                else:
                    path, push = "fee", fee_push(f"c{n}-{i}")
                    earlier.append(push)
                ids = ({f["sessionId"] for f in push["feeLst"]} if path == "fee"
                       else {push["statusInfo"]["sessionId"]})
                if path == "fee":
                    self.fee_sent |= ids
                started = time.monotonic()
                try:
                    async with session.post(f"{self.url}/notify/{path}", data=orjson.dumps(push)) as response:
                        await response.read()
                        self.codes[response.status] += 1
                        if response.status == 200:
                            (self.fee_ok if path == "fee" else self.status_ok).update(ids)
                except (aiohttp.ClientError, TimeoutError) as error:
                    self.codes[type(error).__name__] += 1
                self.seconds.append(time.monotonic() - started)
                await asyncio.sleep(self.pause)

    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


async def read_topic(bootstrap: str, prefix: str, suffix: str, *, expect: int = 0, idle: float = 2.0,
                     timeout: float = 90) -> list[Any]:
    """Every committed record of the topic: until at least ``expect`` arrived and then ``idle`` seconds passed
    without another."""
    settings = topics.TopicSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    return await kafka_helpers.read_all(settings, suffix, expect=expect, idle=idle, timeout=timeout)


def session_ids(records: Iterable[Any]) -> list[str]:
    return [orjson.loads(r.value)["sessionId"] for r in records]


async def describe(bootstrap: str, names: list[str] | None = None) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.describe_topics(names))
    finally:
        await admin.close()


async def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition → leader node id."""
    (described,) = await describe(bootstrap, [topic])
    return {p["partition"]: p["leader"] for p in described["partitions"]}


async def wait_isr(bootstrap: str, size: int, names: list[str] | None = None, timeout: float = 60,
                   at_most: bool = False) -> None:
    """Until every partition of ``names`` (all topics, internal ones included, by default) has ``size`` replicas
    in sync (``at_most``: no more than ``size``)."""
    deadline = time.monotonic() + timeout
    last: list[Any] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            described = await describe(bootstrap, names)
            last = [(t["topic"], p["partition"], p["isr"]) for t in described for p in t["partitions"]]
            sizes = [len(isr) for _, _, isr in last]
            if all(t["error_code"] == 0 for t in described) and all(
                    (n <= size) if at_most else (n >= size) for n in sizes):
                return
        await asyncio.sleep(0.3)
    bad = [item for item in last if (len(item[2]) > size if at_most else len(item[2]) < size)]
    raise AssertionError(f"ISR not {'at most' if at_most else 'at least'} {size} within {timeout}s: {bad[:10]}")
