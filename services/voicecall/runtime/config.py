"""Configuration from ``VOICECALL_*`` environment variables (pydantic-settings).

Each service subclasses :class:`CommonSettings` with its own fields; :func:`load` turns a validation error into
one clear message that names the offending variable and stops the process.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voicecall.runtime.logging import is_secret_key

ENV_PREFIX = "VOICECALL_"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: Any) -> float:
    """``"7d"``, ``"90m"``, ``"1.5s"``, ``"250ms"`` or a plain number of seconds → seconds (float)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 30s, 15m, 2h, 7d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
               "g": 1 << 30, "gib": 1 << 30, "gb": 10**9}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    """``"1MiB"``, ``"512k"``, ``"200MB"`` or a plain number of bytes → bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 1048576, 512KiB, 1MiB, 200MB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_list(value: Any) -> list[str]:
    """A comma-separated environment value → list of stripped, non-empty items."""
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):  # a JSON list, pydantic-settings' own format for list variables
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return parse_list(parsed)
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_address(value: Any, default_host: str | None = None) -> tuple[str, int]:
    """``"host:port"`` (an IPv6 host in brackets) → ``(host, port)``; ``":port"`` takes ``default_host``."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    host = host.strip().removeprefix("[").removesuffix("]") or (default_host or "")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not a host:port: {text!r} (e.g. 127.0.0.1:9092)")
    return host, int(port)


def parse_bootstrap(value: Any) -> list[tuple[str, int]]:
    """A Kafka bootstrap list ``"host:port[,host:port...]"`` → its addresses."""
    return [parse_address(part) for part in str(value).split(",")]


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
# NoDecode: the environment source would otherwise insist on JSON for a list and reject "a.example,b.example".
CommaList = Annotated[list[str], NoDecode, BeforeValidator(parse_list)]


class CommonSettings(BaseSettings):
    """Settings every process shares."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    kafka_bootstrap: str = Field("localhost:9092", min_length=3)
    topic_prefix: str = Field("voicecall.", pattern=r"^[A-Za-z0-9._-]*$")
    kafka_client_id: str = "voicecall"
    kafka_security_protocol: str = Field("PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(None, repr=False)
    kafka_ssl_cafile: str | None = None
    log_level: str = Field("INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    log_format: str = Field("auto", pattern=r"^(auto|json|console)$")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9100, ge=0, le=65535)
    deadletter_max_payload: Size = Field(512 * 1024, ge=1024)


S = TypeVar("S", bound=BaseSettings)


def describe_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line per bad field, each naming the environment variable the user has to fix."""
    prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"{prefix}{field.upper()}: {item['msg']}" if is_secret_key(field)
                     else f"{prefix}{field.upper()}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment plus command-line overrides (``None`` = not given).

    A bad value prints a message naming the variable and exits with status 2.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as error:
        print(describe_error(cls, error), file=sys.stderr)
        raise SystemExit(2) from None
