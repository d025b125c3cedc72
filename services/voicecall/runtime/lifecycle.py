"""Process lifecycle: the event loop, SIGTERM/SIGINT handling and a clean exit 0.

A service is ``async def main(stop: asyncio.Event) -> None``: it runs until ``stop`` is set, then drains what is
in flight, flushes its producer, commits, and returns. A second signal while draining exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Awaitable, Callable

from voicecall.runtime import logging as vlog, stops
from voicecall.runtime.failures import Refusal

Service = Callable[[asyncio.Event], Awaitable[None]]


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()


def install_stop_handlers(stop: asyncio.Event, on_force: Callable[[], None] | None = None) -> None:
    """First SIGTERM/SIGINT sets ``stop`` (graceful; already set if one came while the command started); a second
    one exits immediately.

    ``on_force`` runs just before that immediate exit (a supervisor kills its children there, so a second Ctrl-C
    never leaves processes behind).
    """
    loop = asyncio.get_running_loop()
    log = vlog.get("lifecycle")

    def on_signal(signum: int) -> None:
        # The state first, the words after: a log line can fail (stderr closed, its reader gone) and must never
        # keep a stop from happening.
        if stop.is_set():
            with contextlib.suppress(Exception):
                log.warning("second signal, exiting now", signal=signal.Signals(signum).name)
            if on_force is not None:
                with contextlib.suppress(Exception):
                    on_force()
            os._exit(1)
        stop.set()
        with contextlib.suppress(Exception):
            log.info("stopping", signal=signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    if stops.requested():  # it came while the command was starting
        stop.set()


def run(service: Service, on_force: Callable[[], None] | None = None) -> int:
    """Run ``service`` until it returns after a stop signal; 0 on a clean stop, 1 on a crash.

    A :class:`~voicecall.runtime.failures.Refusal` (bad configuration found while starting) is not a crash: it
    leaves here as it is, for the entry point to print as one line (exit 2).
    """
    log = vlog.get("lifecycle")

    async def wrapper() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop, on_force)
        await service(stop)

    loop = new_event_loop()
    try:
        loop.run_until_complete(wrapper())
    except Refusal:
        raise
    except Exception:
        log.exception("service failed")
        return 1
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    log.info("stopped cleanly")
    return 0


def tune_gc() -> None:
    """Run CPython's cyclic collector less often, for a stage's hot loop: it allocates a few dozen container objects
    per record and makes no cycles, while the default gen-0 threshold (700) ran the collector every few dozen
    records over a batch in flight — about as much CPU as the billing rules (bench/billing.py). Reference counting
    still frees everything at once; only the rare cycle waits longer."""
    gc.collect()
    gc.freeze()  # what start-up allocated stays: never scan it again
    gc.set_threshold(50_000, 20, 20)
