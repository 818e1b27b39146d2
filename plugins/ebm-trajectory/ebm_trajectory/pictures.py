"""Pictures of trajectories (matplotlib, through the kit's Agg figures: no pyplot, no display):
paths over the obstacles of their scenes, and motion-capture predictions against the truth
over time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from ebmcore.kit.files import write_via

#: scenes or windows shown
SHOWN = 8


def scenes_png(paths: dict[str, Tensor], obstacles: Tensor, path: Path, *, shown: int = SHOWN,
               columns: int = 4) -> None:
    """One panel per scene (at most ``shown``): its obstacles (grey discs, the margin dotted)
    and each set of ``paths`` ``(n, T, 2)`` (label → paths; the first starts and ends the
    panels' markers)."""
    n = min(shown, len(obstacles))
    rows = -(-n // columns)
    cols = min(columns, n)
    fig = _figure(figsize=(2.6 * cols, 2.6 * rows))
    colours = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for cx, cy, r in obstacles[i].tolist():
            ax.add_patch(_circle((cx, cy), r, color="0.7"))
        for k, (label, p) in enumerate(paths.items()):
            q = p[i].detach().double().cpu().numpy()
            ax.plot(q[:, 0], q[:, 1], "-o", ms=2, lw=1.2, color=colours[k % len(colours)],
                    label=label if i == 0 else None)
        q = next(iter(paths.values()))[i].detach().double().cpu().numpy()
        ax.plot([q[0, 0], q[-1, 0]], [q[0, 1], q[-1, 1]], "s", ms=5, color="black")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(paths) > 1:
        fig.legend(loc="lower center", ncol=len(paths), fontsize=8, frameon=False)
    # fixed margins: tight_layout costs seconds a figure
    fig.subplots_adjust(left=0.02, right=0.98, top=0.98, bottom=0.08 if len(paths) > 1 else 0.02,
                        wspace=0.05, hspace=0.05)
    _save(fig, path)


def _figure(**kw):
    from matplotlib.figure import Figure  # imported here: half a second, and only for pictures

    return Figure(**kw)


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # an Agg canvas: saving needs no backend, pyplot is never touched
    write_via(Path(path), lambda tmp: fig.savefig(os.fspath(tmp), format="png", dpi=100))


def _circle(centre, radius, **kw):
    from matplotlib.patches import Circle

    return Circle(centre, radius, **kw)


def motion_png(truth: Tensor, predictions: dict[str, Tensor], path: Path, *, past: int, fps: float,
               channels: list[int], names: list[str], shown: int = 4) -> None:
    """Windows ``(n, T, C)`` over time: for each of ``shown`` windows (rows) and each of the
    ``channels`` (columns), the truth (black; the observed past thick) and each prediction
    (label → windows ``(n, T, C)``), the future only; a dotted line where the past ends."""
    n = min(shown, len(truth))
    fig = _figure(figsize=(2.8 * len(channels), 1.9 * n))
    t = (np.arange(truth.shape[1]) - (past - 1)) / fps
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i in range(n):
        for j, c in enumerate(channels):
            ax = fig.add_subplot(n, len(channels), i * len(channels) + j + 1)
            y = truth[i, :, c].double().cpu().numpy()
            ax.plot(t, y, color="black", lw=1, label="truth" if i == j == 0 else None)
            ax.plot(t[:past], y[:past], color="black", lw=2.5)
            for k, (label, p) in enumerate(predictions.items()):
                q = p[i, :, c].double().cpu().numpy()
                ax.plot(t[past - 1:], q[past - 1:], color=colours[k % len(colours)], lw=1,
                        label=label if i == j == 0 else None)
            ax.axvline(0, color="0.6", ls=":", lw=1)
            if i == 0:
                ax.set_title(names[j], fontsize=8)
            if i == n - 1:
                ax.set_xlabel("seconds from the last observed frame", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.legend(loc="lower center", ncol=1 + len(predictions), fontsize=8, frameon=False)
    # fixed margins: tight_layout costs seconds a figure
    fig.subplots_adjust(left=0.06, right=0.98, top=0.95, bottom=0.1, wspace=0.25, hspace=0.35)
    _save(fig, path)
