"""The Huawei apps of one deployment: appKey → one or two secrets (two while a secret is rotated: either verifies).

They come from ``VOICECALL_HUAWEI_APPS_FILE``, a JSON file ``{"<appKey>": "<secret>" | ["<secret>", "<secret>"]}``
(a mounted Kubernetes Secret), plus the single ``VOICECALL_HUAWEI_APP_KEY``/``_APP_SECRET`` pair. The file is read
again when it changes (its stat, looked at most once a second: a Secret volume swaps a symlink, so the inode
changes); a broken file keeps the last good apps, says so in the log and in ``voicecall_huawei_apps_file_broken``.
A secret never reaches a log line, a metric or an exception text: errors name the file and the appKey only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import orjson
from prometheus_client import Counter, Gauge
from pydantic import Field, SecretStr, field_validator

from voicecall.runtime import logging as vlog
from voicecall.runtime.config import CommonSettings

Apps = dict[str, tuple[str, ...]]

CHECK_EVERY = 1.0  # seconds between two looks at the file's stat

BROKEN = Gauge("voicecall_huawei_apps_file_broken",
               "1 while VOICECALL_HUAWEI_APPS_FILE cannot be read or parsed (the last good apps stay in use)")
RELOADS = Counter("voicecall_huawei_apps_reloads_total", "reads of a changed apps file, by result", ["result"])
IN_USE = Gauge("voicecall_huawei_apps", "apps in use (the apps file's and the single VOICECALL_HUAWEI_APP_KEY)")

log = vlog.get("apps")


def parse_apps(data: object, source: str = "apps") -> Apps:
    """The apps file's JSON → appKey → secrets. A ValueError names what is wrong, never a secret."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a JSON object {{\"<appKey>\": \"<secret>\" | [\"<secret>\", ...]}}")
    apps: Apps = {}
    for key, value in data.items():
        if not key:
            raise ValueError(f"{source}: an appKey is empty")
        secrets = [value] if isinstance(value, str) else value
        if (not isinstance(secrets, list) or not 1 <= len(secrets) <= 2
                or not all(isinstance(secret, str) and secret for secret in secrets)):
            raise ValueError(f"{source}: app {key!r} needs a non-empty secret or a list of one or two")
        apps[key] = tuple(secrets)
    return apps


def load_apps_file(path: str | Path) -> Apps:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise ValueError(f"apps file {path}: {error.strerror or type(error).__name__}") from None
    except orjson.JSONDecodeError as error:  # its position only: the message must not quote the file's text
        raise ValueError(f"apps file {path}: not JSON (line {error.lineno}, column {error.colno})") from None
    apps = parse_apps(data, f"apps file {path}")
    if not apps:
        raise ValueError(f"apps file {path}: no apps in it")
    return apps


def as_apps(apps: Mapping[str, str | Sequence[str]]) -> Apps:
    return {key: (value,) if isinstance(value, str) else tuple(value) for key, value in apps.items()}


class AppsSettings(CommonSettings):
    """The apps of a service that verifies or makes Huawei signatures."""

    huawei_apps_file: str | None = Field(
        None, min_length=1, description='JSON file {"<appKey>": "<secret>" | ["<secret>", "<secret>"]} (a mounted '
        "Secret); re-read when it changes, two secrets while rotating")
    huawei_app_key: str = Field("", description="appKey of a single app (used with, or instead of, the apps file)")
    huawei_app_secret: SecretStr = Field(SecretStr(""), description="the single app's secret")

    @field_validator("huawei_apps_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            load_apps_file(value)  # a broken file at start stops the process, naming the variable
        return value

    def single_app(self) -> tuple[str, str] | None:
        secret = self.huawei_app_secret.get_secret_value()
        return (self.huawei_app_key, secret) if self.huawei_app_key and secret else None


def merged(file_apps: Apps, single: tuple[str, str] | None) -> Apps:
    """The file's apps plus the single pair (its secret added to the file's ones for the same appKey)."""
    apps = dict(file_apps)
    if single is not None:
        key, secret = single
        known = apps.get(key, ())
        apps[key] = known if secret in known else (*known, secret)
    return apps


class AppRegistry:
    """The apps in use. :meth:`current` costs a clock read; the file's stat is looked at once per ``every``."""

    def __init__(self, path: str | None, single: tuple[str, str] | None = None, *, every: float = CHECK_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.single = single
        self.every = every
        self.clock = clock
        self._stat: tuple[int, int, int] | None = None
        self._next = 0.0
        self.broken = False
        self._apps = merged(load_apps_file(path) if path else {}, single)
        self._stat = self._look()
        self._next = clock() + every
        IN_USE.set(len(self._apps))
        BROKEN.set(0)

    @classmethod
    def from_settings(cls, settings: AppsSettings) -> AppRegistry:
        return cls(settings.huawei_apps_file, settings.single_app())

    @property
    def has_file(self) -> bool:
        return self.path is not None

    def current(self) -> Apps:
        """The apps now (a new dict object after every change, the same one otherwise)."""
        if self.path is not None and self.clock() >= self._next:
            self.refresh()
        return self._apps

    def _look(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path) if self.path else None
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size) if stat else None

    def refresh(self) -> bool:
        """Read the file again if its stat changed; True when the apps changed."""
        self._next = self.clock() + self.every
        if self.path is None:
            return False
        stat = self._look()
        if stat == self._stat:
            return False
        self._stat = stat
        try:
            apps = merged(load_apps_file(self.path), self.single)
        except ValueError as error:
            RELOADS.labels("broken").inc()
            if not self.broken:
                log.error("apps file unusable, keeping the last good apps", error=str(error), apps=len(self._apps))
            self.broken = True
            BROKEN.set(1)
            return False
        RELOADS.labels("ok").inc()
        if self.broken:
            log.info("apps file usable again")
        self.broken = False
        BROKEN.set(0)
        changed = apps != self._apps
        if changed:
            log.info("apps file read again", apps=len(apps))
            self._apps = apps
            IN_USE.set(len(apps))
        return changed
