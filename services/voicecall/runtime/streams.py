"""stdout and stderr that never raise: a reader that went away (``| tee`` ended, ``| head`` had enough) or a
closed stderr must not turn a log line or a report into an exception, least of all on the way out.

:func:`protect` runs first in every ``voicecall`` command. Output to a stream whose reader is gone is dropped; the
descriptor is pointed at /dev/null so that the interpreter's own flush at exit succeeds too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Any, TextIO, cast


class SafeText:
    """A text stream whose writes and flushes never raise; ``broken`` once its reader has gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._break()

    def isatty(self) -> bool:
        try:
            return not self.broken and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _break(self) -> None:
        self.broken = True
        discard(self._stream)

    def __getattr__(self, name: str) -> Any:  # fileno, buffer, encoding, …: the real stream's
        return getattr(self._stream, name)


def discard(stream: IO[Any]) -> None:
    """From now on, what is written to ``stream``'s descriptor goes to /dev/null (its reader is gone)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


def _ensure_open(fd: int) -> None:
    """A process started with ``2>&-`` has no descriptor 2: the next file opened would get it, and every line
    meant for stderr would land in that file (or socket). /dev/null takes the place."""
    try:
        os.fstat(fd)
    except OSError:
        devnull = os.open(os.devnull, os.O_RDWR)
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)


def protect() -> None:
    """Make sys.stdout and sys.stderr safe to write to (idempotent)."""
    for fd in (0, 1, 2):
        _ensure_open(fd)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, SafeText):
            continue
        if stream is None:  # started without the descriptor: Python gave no stream at all
            stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        setattr(sys, name, cast(TextIO, SafeText(stream)))
