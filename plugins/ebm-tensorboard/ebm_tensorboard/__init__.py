"""TensorBoard for ebm runs: an observer plugin, active once installed.

Beside ``metrics.jsonl`` it writes ``RUN_DIR/tensorboard/events.out.tfevents.*``: every
record of ``metrics.jsonl`` as scalars (same names: ``loss/energy``, ``mmd2``…, at the
record's step) and every picture the run draws as an image (``samples`` at the step it was
drawn; at the end ``final/samples`` and the data's other figures, e.g. ``final/density``), as
the runner announces them (hook ``ebm_picture``).
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

_writers: dict[int, Any] = {}  # id(run) → SummaryWriter


def _enabled() -> bool:
    return os.environ.get("EBM_TENSORBOARD", "1") not in ("0", "false", "no", "")


@hookimpl
def ebm_run_start(run):
    if not _enabled():
        return
    from torch.utils.tensorboard import SummaryWriter

    # on resume, what the earlier process logged after the checkpoint is purged (it is redone)
    _writers[id(run)] = SummaryWriter(log_dir=str(Path(run.out) / "tensorboard"),
                                      purge_step=run.step + 1 if run.step else None)


@hookimpl
def ebm_log(run, step, record):
    writer = _writers.get(id(run))
    if writer is None:
        return
    for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)):
            writer.add_scalar(key, value, step)
    writer.flush()


@hookimpl
def ebm_picture(run, step, tag, path):
    writer = _writers.get(id(run))
    if writer is not None:
        writer.add_image(tag, _read_png(path), step, dataformats="HWC")


@hookimpl
def ebm_run_end(run, record):
    writer = _writers.pop(id(run), None)
    if writer is None:
        return
    step = int(record.get("step", run.step))
    tasks = tuple(f"{label}/" for label in run.tasks)
    for key, value in record.items():  # the tasks' metrics, added to the final record after its ebm_log
        if key.startswith(("time/tasks", *tasks)) and isinstance(value, (int, float)):
            writer.add_scalar(key, value, step)
    writer.close()


def _read_png(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
