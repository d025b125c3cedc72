"""Stop signals that come before a command has taken over their handling.

A supervisor may send SIGTERM right after it started a process (``voicecall dev`` stopping at once, Kubernetes
deleting a pod that is still starting). Python's default would end the process with the signal's status — an
unclean stop — while its modules load or before its event loop runs, which takes seconds on a loaded machine.
:func:`deferred` (the entry point runs each command inside it) remembers the first SIGTERM/SIGINT instead, and the
command stops as soon as it installs its own handling (:func:`requested`); a second signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    if _received:
        os._exit(1)  # the second signal: the "exit now" escape
    _received.append(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Remember stop signals until the command installs its own handlers; the previous handlers come back after
    (the command may run inside a test's process)."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _received.clear()


def requested() -> bool:
    """Whether a stop signal came while it was deferred: the command's handling should stop at once."""
    return bool(_received)


def restore() -> None:
    """Python's own handling again, for a one-shot command: Ctrl-C interrupts it, SIGTERM ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
