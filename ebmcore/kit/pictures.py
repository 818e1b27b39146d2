"""Pictures every modality may use: a grid of images as one PNG, and 2-D points as scatter
plots beside a learned density exp(−E).

Figures are built with the object-oriented ``matplotlib.figure.Figure`` and saved through
the Agg renderer, never through pyplot: this needs no display, leaves the process-wide
backend and pyplot's figure registry untouched (so nothing can leak across a long
training run), and the figure is freed when it goes out of scope.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor

from ebmcore.kit.files import write_via


def image_grid(x: torch.Tensor, *, columns: int = 8, scale: int = 4, limit: int = 64) -> Image.Image:
    """Up to ``limit`` images ``(B, C, H, W)`` (C = 1 or 3), values clamped to [−1, 1], as one
    picture: separated by a one-pixel white border and enlarged ``scale`` times (nearest)."""
    x = x[:limit].detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    b, c = x.shape[:2]
    columns = max(1, min(columns, b))
    rows = math.ceil(b / columns)
    # each image with a white border on its top and left, white tiles after the last image
    tiles = torch.nn.functional.pad(x, (1, 0, 1, 0), value=255)
    tiles = torch.cat([tiles, torch.full((rows * columns - b, *tiles.shape[1:]), 255, dtype=torch.uint8)])
    canvas = rearrange(tiles, "(r k) c h w -> (r h) (k w) c", k=columns)
    array = np.ascontiguousarray(torch.nn.functional.pad(canvas, (0, 0, 0, 1, 0, 1), value=255).numpy())
    img = Image.fromarray(array[..., 0] if c == 1 else array)  # uint8: "L" or "RGB"
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def image_grid_png(x: torch.Tensor, path: Path, *, columns: int = 8, scale: int = 4, limit: int = 64) -> None:
    """:func:`image_grid` written to the PNG ``path``."""
    big = image_grid(x, columns=columns, scale=scale, limit=limit)
    write_via(Path(path), lambda tmp: big.save(tmp, format="PNG"))


_CHUNK = 20_000  # max points per energy_fn call, to bound memory on big grids


def _points(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _scatter(ax, x: Tensor, bounds: tuple[float, float], title: str) -> None:
    p = _points(x)
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4, linewidths=0)
    ax.set_xlim(*bounds)
    ax.set_ylim(*bounds)
    ax.set_aspect("equal")
    ax.set_title(title)


def _figure(**kw):
    """A matplotlib Figure (imported here: matplotlib costs half a second to import, and
    image modalities never draw one)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _save(fig, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches an Agg canvas, so saving needs no backend
    write_via(Path(path), lambda tmp: fig.savefig(os.fspath(tmp), format="png", dpi=100))


def scatter_png(x: Tensor, path, *, bounds: tuple[float, float], title: str = "") -> None:
    """Write a square scatter plot of the (k, 2) points ``x`` to the PNG ``path``; axes fixed to ``bounds``."""
    fig = _figure(figsize=(4, 4))
    _scatter(fig.add_subplot(), x, bounds, title)
    fig.tight_layout()
    _save(fig, path)


def _density_grid(energy_fn: Callable[[Tensor], Tensor], bounds: tuple[float, float],
                  resolution: int) -> np.ndarray:
    """exp(-E) on a resolution x resolution grid over bounds^2, normalised to integrate to 1.

    Row i holds y = ys[i] and column j holds x = xs[j], the layout ``imshow``
    expects with ``origin="lower"``.
    """
    lo, hi = bounds
    axis = torch.linspace(lo, hi, resolution, dtype=torch.float32)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        energies = [energy_fn(chunk).reshape(-1) for chunk in grid.split(_CHUNK)]
    logp = -torch.cat(energies).detach().to("cpu", torch.float64)
    if logp.shape[0] != grid.shape[0]:
        raise ValueError(f"energy_fn must return one energy per point, got {logp.shape[0]} for {grid.shape[0]}")
    finite = torch.isfinite(logp)
    if not finite.any():
        raise ValueError("energy_fn returned no finite energy on the grid")
    # Subtracting the max before exp avoids overflow; non-finite energies
    # (a diverged model) are shown as zero density instead of breaking the plot.
    density = torch.where(finite, torch.exp(logp - logp[finite].max()), torch.zeros_like(logp))
    cell = ((hi - lo) / (resolution - 1)) ** 2
    density = density / (density.sum() * cell)
    return density.reshape(resolution, resolution).numpy()


def density_png(data: Tensor, samples: Tensor, energy_fn: Callable[[Tensor], Tensor] | None, path, *,
                bounds: tuple[float, float], resolution: int = 200) -> None:
    """Write three panels to the PNG ``path``: data, samples, and the density exp(-E) on a grid.

    ``energy_fn`` maps a (k, 2) float32 CPU tensor to k energies; it is called
    under ``torch.no_grad()`` on chunks of at most 20,000 grid points. Without it
    (an energy that is not over the data) only the first two panels are drawn.
    """
    fig = _figure(figsize=(12 if energy_fn else 8, 4))
    axes = fig.subplots(1, 3 if energy_fn else 2)
    _scatter(axes[0], data, bounds, "data")
    _scatter(axes[1], samples, bounds, "samples")
    if energy_fn is None:
        fig.tight_layout()
        _save(fig, path)
        return
    density = _density_grid(energy_fn, bounds, resolution)
    lo, hi = bounds
    axes[2].imshow(density, origin="lower", extent=(lo, hi, lo, hi), cmap="viridis", interpolation="nearest")
    axes[2].set_aspect("equal")
    axes[2].set_title("density exp(\u2212E)")
    fig.tight_layout()
    _save(fig, path)
