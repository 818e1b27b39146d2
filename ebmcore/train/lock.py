"""The run directory belongs to the process that writes it: an exclusive ``flock`` on
``RUN/.lock``, held for the whole run and released by the kernel when that process ends
(even by SIGKILL, so a killed run can be resumed at once). Readers never take it. A forked
child (a data loader's worker) closes its copy at once: a flock belongs to every copy of the
descriptor, and a child outliving a killed run would otherwise keep its directory locked."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ebmcore.errors import EbmError

NAME = ".lock"
#: the descriptors of the locks this process holds
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLock:
    def __init__(self, directory: Path):
        self.path = directory / NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`EbmError` naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EbmError(f"{self.path.parent}: in use by another ebm process (PID {holder}) that is "
                           "writing it; wait for it to end, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD.add(fd)

    def release(self, *, discard: bool = False) -> None:
        """Release the lock; ``discard``: also remove the lock file and the directory if that
        is all it holds (a run that failed before writing anything leaves no folder)."""
        if self._fd is None:
            return
        if discard:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else is there
                self.path.parent.rmdir()
        _HELD.discard(self._fd)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None
