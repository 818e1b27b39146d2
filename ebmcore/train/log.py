"""``metrics.jsonl``: one JSON record per logged step, appended; rewritten only atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ebmcore.errors import EbmError
from ebmcore.kit.files import atomic_write


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def amend_last(self, record: dict[str, float]) -> None:
        """Replace the last record (the final step's) by ``record``."""
        lines = self.path.read_text().splitlines(keepends=True)
        if not lines or json.loads(lines[-1])["step"] != record["step"]:
            raise EbmError(f"{self.path}: the last record is not step {record['step']}")
        lines[-1] = json.dumps(record) + "\n"
        atomic_write(self.path, "".join(lines).encode())

    def truncate(self, step: int) -> None:
        """Drop records written after ``step`` (the checkpoint we resume from) and a line
        torn by a crash."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its step is after the checkpoint anyway
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                keep.append(line + "\n")
        atomic_write(self.path, "".join(keep).encode())
