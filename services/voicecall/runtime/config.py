"""Configuration from ``VOICECALL_*`` environment variables (pydantic-settings).

Each service subclasses :class:`CommonSettings` with its own fields; :func:`load` turns a validation error into
one clear message that names the offending variable and stops the process.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import sys
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, model_validator
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


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
# What aiokafka can do with a user name and password alone (GSSAPI and OAUTHBEARER need more than settings).
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class CommonSettings(BaseSettings):
    """Settings every process shares."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    kafka_bootstrap: str = Field("localhost:9092", min_length=3,
                                 description="Kafka bootstrap servers, host:port[,host:port...] (`voicecall dev` "
                                             "and `voicecall broker`: where the local broker listens)")
    topic_prefix: str = Field("voicecall.", pattern=r"^[A-Za-z0-9._-]*$", description="prefix of every topic name")
    kafka_client_id: str = Field("voicecall", description="client.id prefix of every Kafka client")
    kafka_security_protocol: Annotated[SecurityProtocol, BeforeValidator(_upper)] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: Annotated[SaslMechanism | None, BeforeValidator(_upper)] = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512: required with a SASL_* protocol")
    kafka_sasl_username: str | None = Field(None, description="SASL user name: required with a SASL_* protocol")
    kafka_sasl_password: str | None = Field(None, repr=False, description="SASL password (never logged): required "
                                                                          "with a SASL_* protocol")
    kafka_ssl_cafile: str | None = Field(None, description="PEM file of the CA that signed the brokers' "
                                                           "certificates (SSL, SASL_SSL; default: the system's CAs)")
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = Field(
        "INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console (readable), or auto: console on a terminal, json otherwise")
    metrics_host: str = Field("0.0.0.0", description="address of the ops server (/metrics, /healthz, /readyz) "
                                                     "of dedup, billing and recordings")
    metrics_port: int = Field(9100, ge=0, le=65535, description="its port (0: any free one); the ingress serves "
                                                                "them on its own port")
    deadletter_max_payload: Size = Field(512 * 1024, ge=1024, description="payload kept in a deadletter record; "
                                                                          "a longer one is cut and marked truncated")

    @model_validator(mode="after")
    def _security_fits_together(self) -> Self:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        if sasl and self.kafka_sasl_mechanism is None:
            raise ValueError(f"VOICECALL_KAFKA_SECURITY_PROTOCOL={protocol} needs VOICECALL_KAFKA_SASL_MECHANISM "
                             "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        if not sasl and self.kafka_sasl_mechanism is not None:
            raise ValueError(f"VOICECALL_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism} is unused with "
                             f"VOICECALL_KAFKA_SECURITY_PROTOCOL={protocol}: set SASL_SSL or SASL_PLAINTEXT")
        if self.kafka_ssl_cafile and not protocol.endswith("SSL"):
            raise ValueError(f"VOICECALL_KAFKA_SSL_CAFILE is unused with VOICECALL_KAFKA_SECURITY_PROTOCOL="
                             f"{protocol}: set SSL or SASL_SSL")
        return self

    def startup_problems(self) -> list[str]:
        """What this machine's environment lacks for these settings (checked when a process starts, not when the
        settings are built: a manifest's settings are valid without the Secret that comes with the pod)."""
        problems = []
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [name for name, value in (("VOICECALL_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                                                ("VOICECALL_KAFKA_SASL_PASSWORD", self.kafka_sasl_password))
                       if not value]
            if missing:
                problems.append(f"{' and '.join(missing)}: required with VOICECALL_KAFKA_SECURITY_PROTOCOL="
                                f"{self.kafka_security_protocol}")
        if self.kafka_ssl_cafile:
            try:
                ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            except (OSError, ssl.SSLError) as error:
                problems.append(f"VOICECALL_KAFKA_SSL_CAFILE={self.kafka_ssl_cafile}: not a readable PEM CA file "
                                f"({getattr(error, 'strerror', None) or error})")
        return problems


S = TypeVar("S", bound=BaseSettings)


def describe_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """What is wrong, naming the environment variable the user has to fix: one line, or one line per bad field."""
    prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if not item["loc"]:  # a rule across fields: its message names the variables
            lines.append(message)
            continue
        field = str(item["loc"][0])
        lines.append(f"{prefix}{field.upper()}: {message}" if is_secret_key(field)
                     else f"{prefix}{field.upper()}: {message} (got {item.get('input')!r})")
    return describe_problems(lines)


def describe_problems(lines: list[str]) -> str:
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment plus command-line overrides (``None`` = not given), and check what they
    need of this machine (:meth:`CommonSettings.startup_problems`).

    A bad value prints a message naming the variable and exits with status 2.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = cls(**given)
    except ValidationError as error:
        print(describe_error(cls, error), file=sys.stderr)
        raise SystemExit(2) from None
    problems = settings.startup_problems() if isinstance(settings, CommonSettings) else []
    if problems:
        print(describe_problems(problems), file=sys.stderr)
        raise SystemExit(2)
    return settings
