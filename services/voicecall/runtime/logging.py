"""structlog setup: JSON lines when stderr is not a terminal, readable colours when it is."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from voicecall.runtime import kafkalog

SECRET_KEYS = ("secret", "password", "token", "authorization", "x-aksk", "x_aksk", "credential")


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and any(part in key.lower() for part in SECRET_KEYS)


def _scrub(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced, in nested dicts and lists too
    (``log.info("settings", settings=settings.model_dump())`` must not print the app secret)."""
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: "***" if is_secret_key(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: never print a value whose key looks like a secret."""
    for key, value in event.items():
        if is_secret_key(key) and not isinstance(value, bool):  # whether a secret is set (True/False) is no secret
            event[key] = "***"
        elif isinstance(value, dict | list | tuple):
            event[key] = _scrub(value)
    return event


# Set by voicecall.runtime.tracing while tracing is on: the current span's (trace_id, span_id) in hex, or None.
current_trace_ids: Any = None


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """``trace_id``/``span_id`` on every line logged while a span is current (a record being handled)."""
    ids = current_trace_ids
    if ids is not None:
        found = ids()
        if found is not None:
            event.setdefault("trace_id", found[0])
            event.setdefault("span_id", found[1])
    return event


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    # OPT_NON_STR_KEYS: a log call with a dict keyed by partition numbers must not crash the service.
    return orjson.dumps(obj, default=default or str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and route the standard library's logging (aiokafka, aiohttp) through it."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    # aiokafka's retries while a broker is away: one line per broker and change of state, not one per retry
    handler.addFilter(kafkalog.WATCH)
    kafkalog.watch_connections()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    # aiohttp's access log, a formatted line per request, is a large share of the ingress's CPU per push; keep it off.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.WARNING))


def get(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name, **bound)
