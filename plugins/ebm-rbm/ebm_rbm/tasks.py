"""The ``rbm_filters`` task: a picture of an RBM's filters (the columns of W as images) and
the held-out pseudo-log-likelihood."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from ebm_rbm.energies import BipartiteEnergy
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


class Filters(Task):
    """``filters.png``: hidden unit j's weights W[:, j] as an image, each scaled by its own
    largest |w| (grey is 0); metric ``pll/heldout``: the mean pseudo-log-likelihood of the
    held-out split (binary RBMs; one flipped unit per example, as scikit-learn scores)."""

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
        heldout = data.heldout()
        if heldout is None or not self.energy.binary:
            return {}
        x = heldout.x if not self.c.examples else heldout.x[:self.c.examples]
        x = x.to(self.energy.weight.device)
        return {"pll/heldout": float(pseudo_log_likelihood(self.energy, x, rng=rng).mean())}
