"""The ``rbm_filters`` task: a picture of an RBM's filters (the columns of W as images), Gibbs
chains over time, and the held-out pseudo-log-likelihood."""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import torch

from ebm_rbm.energies import BipartiteEnergy
from ebm_rbm.gibbs import Gibbs
from ebm_rbm.partition import pseudo_log_likelihood
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.pictures import image_grid_png


@attrs.frozen
class FiltersConfig:
    """An RBM's filters as a picture, and its held-out pseudo-log-likelihood."""

    show: int = cfg.positive("filters drawn (hidden units 1 … show)", default=100)
    columns: int = cfg.positive("filters per row of the picture", default=10)
    examples: int = cfg.non_negative("held-out examples scored by pseudo-log-likelihood (0: all)", default=0)
    chains: int = cfg.non_negative("Gibbs chains from uniform noise drawn in gibbs.png, one per row (0: no "
                                   "picture)", default=10)
    sweeps: int = cfg.positive("gibbs.png: the chains shown after 0, 1, 3, 10, 30, … sweeps, up to this many",
                               default=1000)


def sweep_marks(total: int) -> list[int]:
    """0, 1, 3, 10, 30, … and ``total``: the sweeps after which a chain is shown."""
    return sorted({0, total} | {m for k in range(7) for m in (10 ** k, 3 * 10 ** k) if m < total})


class Filters(Task):
    """``filters.png``: hidden unit j's weights W[:, j] as an image, each scaled by its own
    largest |w| (grey is 0); ``gibbs.png``: block Gibbs chains from uniform noise, one per row,
    after 0, 1, 3, 10, … sweeps (the visible draws); metric ``pll/heldout``: the mean
    pseudo-log-likelihood of the held-out split (binary RBMs; one flipped unit per example,
    as scikit-learn scores)."""

    def __init__(self, config: FiltersConfig, energy: BipartiteEnergy, event_shape: tuple[int, ...]):
        self.c, self.energy, self.event_shape = config, energy, tuple(event_shape)

    @classmethod
    def from_config(cls, c: FiltersConfig, ctx) -> Filters:
        energy = ctx.require("energy", "task 'rbm_filters'")
        if not isinstance(energy, BipartiteEnergy):
            raise EbmError(f"task 'rbm_filters' draws an RBM's weights; the energy is a {type(energy).__name__}")
        shape = ctx.need_event_shape("task 'rbm_filters'")
        if len(shape) != 3:
            raise EbmError(f"task 'rbm_filters' draws filters as images (C, H, W); the data's shape is {shape}")
        return cls(c, energy, shape)

    def run(self, objective, data, *, rng: torch.Generator, out: Path) -> dict[str, float]:
        w = self.energy.weight.detach().T[:self.c.show].cpu()
        scale = w.abs().amax(1, keepdim=True).clamp_min(1e-12)
        filters = (w / scale).view(len(w), *self.event_shape)
        image_grid_png(filters, out / "filters.png", columns=self.c.columns, limit=len(filters))
        if self.c.chains:
            self.chains_png(rng, out / "gibbs.png")
        heldout = data.heldout()
        if heldout is None or not self.energy.binary:
            return {}
        x = heldout.x if not self.c.examples else heldout.x[:self.c.examples]
        x = x.to(self.energy.weight.device)
        return {"pll/heldout": float(pseudo_log_likelihood(self.energy, x, rng=rng).mean())}

    def chains_png(self, rng: torch.Generator, path: Path) -> None:
        device = self.energy.weight.device
        v = torch.rand((self.c.chains, *self.event_shape), generator=rng, device=device).round()
        marks = sweep_marks(self.c.sweeps)
        frames = [v]
        for previous, mark in itertools.pairwise(marks):
            frames.append(Gibbs().run(frames[-1], self.energy, mark - previous, rng=rng))
        grid = torch.stack(frames, 1).flatten(0, 1).cpu()  # chain-major: one row per chain
        # a Gaussian RBM's draws are not in [0, 1]: each picture is scaled to its own range
        lo, hi = grid.amin(), grid.amax()
        image_grid_png((grid - lo) / (hi - lo).clamp_min(1e-12) * 2 - 1, path, columns=len(frames), limit=len(grid))
