"""``metrics.jsonl``: one JSON record per logged step, appended; rewritten only atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ebmcore.errors import EbmError
from ebmcore.kit.files import atomic_write, read_regular

#: a metrics log is a line per logged step: far below this
LIMIT = 1 << 30


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, float]) -> None:
        # O_NOFOLLOW: a symlink planted at the log's name is refused, never written through
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(record) + "\n")

    def last(self) -> dict[str, float] | None:
        """The last complete record, if any."""
        records = self.records()
        return records[-1] if records else None

    def records(self) -> list[dict[str, float]]:
        """Every complete record, in order."""
        return [json.loads(line) for line in self._lines() if _step(line) is not None]

    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return read_regular(self.path, limit=LIMIT, what="a metrics log").decode(errors="replace").splitlines()

    def amend_last(self, record: dict[str, float]) -> None:
        """Replace the last record (the final step's) by ``record``."""
        lines = self._lines()
        if not lines or _step(lines[-1]) != record["step"]:
            raise EbmError(f"{self.path}: the last record is not step {record['step']}")
        lines[-1] = json.dumps(record)
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode())

    def truncate(self, step: int) -> None:
        """Drop records written after ``step`` (the checkpoint we resume from) and a line
        torn by a crash."""
        # a line cut short by a crash has no step: its step is after the checkpoint anyway
        keep = [line + "\n" for line in self._lines() if (s := _step(line)) is not None and s <= step]
        atomic_write(self.path, "".join(keep).encode())


def _step(line: str) -> int | None:
    """The step of a record line, or None for a line that is not a record (torn by a crash)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record["step"] if isinstance(record, dict) and isinstance(record.get("step"), int) else None
