"""SIGINT, SIGTERM and SIGHUP during a run: noted and acted on between steps, or at once
where nothing is left to save."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from ebmcore.errors import Interrupted

#: the signals that stop a run: Ctrl-C, a polite kill, a closed terminal
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM/SIGHUP are noted (in the list yielded) and acted on between steps, so
    the checkpoint written on the way out is of a completed step; a second signal
    interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def note(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    for s in previous:
        signal.signal(s, note)
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def interrupting_signals(during: str) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP stop the block at once with :class:`Interrupted` (for work that
    leaves nothing to save, such as the tasks after the final checkpoint)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Interrupted(f"{signal.Signals(signum).name} during {during}", signum)

    previous = {s: signal.signal(s, stop) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
