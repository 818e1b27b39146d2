"""Files read and written safely: writes that a crash leaves whole (the old file or the new)
and that never follow a planted symlink; reads of regular files only, with a size cap.

Temporary files are created exclusively under random names (``mkstemp``: ``O_EXCL``, which
never opens through a symlink) beside their destination, and renamed over it: a rename
replaces a symlink at the destination, it never writes through it. Leftovers of a crash
match :data:`TEMPORARY` and are removed by :func:`remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO
from pathlib import Path

from ebmcore.errors import EbmError

#: the names of temporary files (``.<name>.<random>.tmp`` and ``.<name>.<random>.tmp.<suffix>``)
TEMPORARY = ".*.tmp*"


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A new, exclusively created file beside ``path``, renamed over it when the block ends
    without an error and removed when it does not."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide outputs from the user's group
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new, never half."""
    with _temporary(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_via(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write(tmp)`` write a file (a picture, by a library that takes a path), then move
    it to ``path``: never half a file, never through a symlink at ``path``."""
    with _temporary(path) as tmp:
        write(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: set it back at once
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_leftovers(directory: Path) -> list[Path]:
    """Remove the temporary files a crash left under ``directory`` (never following links)."""
    removed = []
    for p in directory.rglob(TEMPORARY):
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def open_regular(path: Path, *, what: str, error: type[EbmError] = EbmError) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is a regular file (a symlink to one is fine);
    otherwise ``error`` naming the file and what is wrong. FIFOs and devices are refused
    without blocking or reading. Errors while the block reads raise ``error`` too."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
            raise error(f"{path}: {kind}, not a regular file; refusing to read it as {what}")
        with os.fdopen(os.dup(fd), "rb") as f:
            yield f
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_regular(path: Path, *, limit: int, what: str, error: type[EbmError] = EbmError) -> bytes:
    """The bytes of ``path`` if it is a regular file (:func:`open_regular`) of at most
    ``limit`` bytes; otherwise ``error`` naming the file and what is wrong."""
    with open_regular(path, what=what, error=error) as f:
        # the size it has, then whatever it grew by, never more than limit + 1 bytes in memory
        chunks, n, want = [], 0, os.fstat(f.fileno()).st_size + 1
        while n <= limit and (chunk := f.read(min(limit + 1 - n, want))):
            chunks.append(chunk)
            n, want = n + len(chunk), 1 << 20
        data = b"".join(chunks)
    if len(data) > limit:
        raise error(f"{path}: larger than {human_bytes(limit)}, the most {what} may be")
    return data


def human_bytes(n: float) -> str:
    """``1.5 GiB``: a byte count for messages."""
    units, i = ("bytes", "KiB", "MiB", "GiB", "TiB"), 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{int(n)} bytes" if i == 0 else f"{n:.1f} {units[i]}"
