"""SIGINT and SIGTERM during training: noted, and acted on between steps."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM are noted (in the list yielded) and acted on between steps, so the
    checkpoint written on the way out is of a completed step; a second signal interrupts
    at once."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

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
