"""TensorBoard for ebm runs: an observer plugin, active once installed.

Beside ``metrics.jsonl`` it writes ``RUN_DIR/tensorboard/events.out.tfevents.*``: every
record of ``metrics.jsonl`` as scalars (same names: ``loss/energy``, ``mmd2``…, at the
record's step) and every picture the run draws as an image (``samples`` at the step it was
drawn; at the end ``final/samples`` and the data's other figures, e.g. ``final/density``).
``tensorboard --logdir runs`` shows them all.

On ``--resume`` the writer purges what was logged after the checkpoint the run continues
from (TensorBoard's ``purge_step``), as ``metrics.jsonl`` drops those records. Under
torchrun only rank 0 calls observers, so there is one event file per run. Set
``EBM_TENSORBOARD=0`` to switch the plugin off without uninstalling it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ebmcore import hookimpl

_writers: dict[int, Any] = {}  # id(run) → (SummaryWriter, pictures already sent)


def _enabled() -> bool:
    return os.environ.get("EBM_TENSORBOARD", "1") not in ("0", "false", "no", "")


@hookimpl
def ebm_components():
    return []


@hookimpl
def ebm_run_start(run):
    if not _enabled():
        return
    from torch.utils.tensorboard import SummaryWriter

    out = Path(run.out)
    writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=run.step + 1 if run.step else None)
    # pictures already drawn before a resume were sent by the earlier process
    sent = {p.name for p in (out / "samples").glob("step-*.png")} if run.step else set()
    _writers[id(run)] = (writer, sent)


@hookimpl
def ebm_log(run, step, record):
    entry = _writers.get(id(run))
    if entry is None:
        return
    writer, sent = entry
    for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)):
            writer.add_scalar(key, value, step)
    _send_pictures(run, writer, sent)
    writer.flush()


@hookimpl
def ebm_run_end(run, record):
    entry = _writers.pop(id(run), None)
    if entry is None:
        return
    writer, sent = entry
    _send_pictures(run, writer, sent)
    step = int(record.get("step", run.step))
    if step == run.recipe.run.steps:  # the figures the data wrote for the final model
        for png in sorted(Path(run.out).glob("*.png")):
            writer.add_image(f"final/{png.stem}", _read_png(png), step, dataformats="HWC")
        extra = {k: v for k, v in record.items() if k.startswith(("time/tasks", *_task_prefixes(run)))}
        for key, value in extra.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
    writer.close()


def _task_prefixes(run) -> tuple[str, ...]:
    return tuple(f"{label}/" for label in getattr(run, "tasks", {}))


def _send_pictures(run, writer, sent: set[str]) -> None:
    """Pictures of samples/ (``step-000100.png``) not sent yet, at their step."""
    for png in sorted((Path(run.out) / "samples").glob("step-*.png")):
        if png.name in sent:
            continue
        sent.add(png.name)
        writer.add_image("samples", _read_png(png), int(png.stem.split("-")[1]), dataformats="HWC")


def _read_png(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
