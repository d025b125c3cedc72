"""Kafka client factories: every producer, consumer and admin client of the project is made here.

The settings follow from the interface's promises: ``acks=all`` and idempotence for every producer (nothing is
acknowledged before it is replicated), ``read_committed`` for consumers of transactional topics, manual commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from voicecall.runtime import logging as vlog
from voicecall.runtime.config import CommonSettings
from voicecall.runtime.failures import BrokerUnreachable, CredentialsRefused

# Every producer's limits, explicit: the ingress sizes records against them, a stage deadletters what is over.
MAX_REQUEST_SIZE = 1 << 20  # aiokafka's default: a record estimated above it is refused by ``send``
MAX_BATCH_SIZE = 256 * 1024  # concurrent requests fill the batches (bench/RESULTS.md)

NOTICE_INTERVAL = 60.0  # "broker unreachable, retrying": once, then at most once a minute


class Throttle:
    """True the first time, then at most once per ``interval`` seconds."""

    def __init__(self, interval: float = NOTICE_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


# While a client of ours bootstraps, aiokafka's own "Unable connect to …" lines (logger "aiokafka") are kept here
# instead of printed: the reason goes into our one line (a refusal, or "broker unreachable, retrying"). Tasks that
# aiokafka starts meanwhile inherit the context; ``active`` turns the capture off for them once the start is over.
class _Capture:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.active = True


_capture: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("kafka_bootstrap_capture", default=None)


class _KeepBootstrapReasons(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        capture = _capture.get()
        if capture is None or not capture.active:
            return True
        args = record.args
        capture.reasons.append(str(args[-1]) if isinstance(args, tuple) and args else record.getMessage())
        return False


logging.getLogger("aiokafka").addFilter(_KeepBootstrapReasons())


async def _start(bootstrap: str, start: Callable[[], Awaitable[Any]], close: Callable[[], Awaitable[Any]],
                 wait: asyncio.Event | None) -> None:
    """``start()``; a broker that cannot be reached closes the client and raises :class:`BrokerUnreachable` (one
    line naming the bootstrap) — or, with ``wait`` (a service's stop event), is retried until it can be reached or
    ``wait`` is set, saying so once and then at most once a minute (a service outlives a broker restart)."""
    throttle = Throttle()
    delay = 0.5
    while True:
        if wait is not None and wait.is_set():
            return  # stopping before Kafka came back: the caller's loop ends at once; its stop() closes us
        capture = _Capture()
        token = _capture.set(capture)
        try:
            if wait is None:
                await start()
            elif not await _unless(wait, start()):
                return  # stopped while connecting: the caller's loop ends at once; its stop() closes us
            return
        except KafkaConnectionError as error:
            reason = "; ".join(dict.fromkeys(capture.reasons)) or str(error)
            unreachable = BrokerUnreachable(bootstrap, reason)
        finally:
            capture.active = False
            _capture.reset(token)
        if "SaslAuthenticationFailed" in reason or "Authentication failed" in reason:
            with contextlib.suppress(Exception):
                await close()
            raise CredentialsRefused(bootstrap, reason) from None
        if wait is None:
            with contextlib.suppress(Exception):
                await close()
            raise unreachable from None
        if throttle.due():
            vlog.get("kafka").warning("broker unreachable, retrying", bootstrap=bootstrap, error=unreachable.reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait.wait(), delay)
        delay = min(delay * 2, 5.0)


async def _unless(stop: asyncio.Event, work: Awaitable[Any]) -> bool:
    """Await ``work`` unless ``stop`` is set first (then ``work`` is cancelled): whether it finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False
    task.result()
    return True


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]
    def __init__(self, *topics: str, wait: asyncio.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*topics, **kwargs)
        self._voicecall = (str(kwargs["bootstrap_servers"]), wait)

    async def start(self) -> None:
        bootstrap, wait = self._voicecall
        await _start(bootstrap, super().start, self.stop, wait)

    async def stop(self) -> None:
        try:
            await super().stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled ourselves
            # aiokafka 0.14's fetcher cancels a fetch that is waiting out a broker outage and awaits it without
            # catching the cancellation; closing stopped half-way: finish it (the connections and metadata task).
            await self._client.close()


class Producer(AIOKafkaProducer):  # type: ignore[misc]
    def __init__(self, *, wait: asyncio.Event | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._voicecall = (str(kwargs["bootstrap_servers"]), wait)

    async def start(self) -> None:
        bootstrap, wait = self._voicecall
        await _start(bootstrap, super().start, self.stop, wait)


class Admin(AIOKafkaAdminClient):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._voicecall_bootstrap = str(kwargs["bootstrap_servers"])

    async def start(self) -> None:
        await _start(self._voicecall_bootstrap, super().start, self.close, None)


def connection_kwargs(settings: CommonSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def make_producer(settings: CommonSettings, *, client_suffix: str = "", wait: asyncio.Event | None = None,
                  **overrides: Any) -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer. ``linger_ms`` stays small: concurrent requests fill batches.

    ``start()`` of every client made here turns a broker that cannot be reached into one line
    (:class:`BrokerUnreachable`, exit 2) and closes the client; with ``wait`` (a service's stop event) it retries
    instead until the broker answers or ``wait`` is set.
    """
    kwargs: dict[str, Any] = {
        **connection_kwargs(settings),
        "client_id": f"{settings.kafka_client_id}{client_suffix}",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 1,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_request_size": MAX_REQUEST_SIZE,
        "request_timeout_ms": 30_000,
    }
    kwargs.update(overrides)
    return Producer(wait=wait, **kwargs)


def make_transactional_producer(settings: CommonSettings, transactional_id: str, **overrides: Any
                                ) -> AIOKafkaProducer:
    return make_producer(settings, client_suffix=f"-{transactional_id}", transactional_id=transactional_id,
                         **overrides)


def make_consumer(settings: CommonSettings, *topics: str, group_id: str | None, wait: asyncio.Event | None = None,
                  **overrides: Any) -> AIOKafkaConsumer:
    """A manually committing consumer that only sees committed transactional records."""
    kwargs: dict[str, Any] = {
        **connection_kwargs(settings),
        "client_id": f"{settings.kafka_client_id}-{group_id or 'reader'}",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "fetch_max_bytes": 16 * 1024 * 1024,
        # noida-db rejects session timeouts below 6 s; 10 s is Kafka's default and fine everywhere.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
    }
    kwargs.update(overrides)
    return Consumer(*topics, wait=wait, **kwargs)


def make_admin(settings: CommonSettings, **overrides: Any) -> AIOKafkaAdminClient:
    kwargs: dict[str, Any] = {**connection_kwargs(settings), "client_id": f"{settings.kafka_client_id}-admin"}
    kwargs.update(overrides)
    return Admin(**kwargs)


def group_id(settings: CommonSettings, service: str) -> str:
    """The consumer group of a service (``voicecall.dedup``, …); ``voicecall replay reset`` targets it."""
    return f"{settings.topic_prefix}{service}"
