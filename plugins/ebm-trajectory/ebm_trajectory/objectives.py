"""Conditional maximum likelihood of trajectories given their context, the learning rule of
energy-based continuous inverse optimal control (Xu, Xie, Zhao, Baker, Zhao & Wu 2022):

    ∇θ log p(X | S) = −∇θ E(X, S) + E_{p(X'|S)}[∇θ E(X', S)],

the expectation taken over Langevin samples X' of the free part of each training window
with its context S (``Batch.cond``: the observed mask) held fixed, bit for bit: masked
sampling from the guess of :mod:`ebm_trajectory.guess` (the straight line, the held pose or
constant velocity) plus ``start_noise``. The energy E is then the learned cost, up to a
constant per context. ``objective 'mle'`` instead samples whole windows, context too (a
joint model), which wastes the chains on what is given.

``sample`` (the run's evaluation samples) completes the contexts of n of the data's held-out
windows, spread evenly over the split.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor

from ebm_trajectory.data import spread
from ebm_trajectory.guess import guess
from ebmcore import Batch, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.losses import maximum_likelihood_loss
from ebmcore.kit.replicas import one_row_per_chain


@attrs.frozen
class ConditionalMLEConfig:
    """Maximum likelihood of the free part given the observed part (cond: the mask), masked Langevin negatives."""

    start: Literal["interpolate", "extrapolate"] = cfg.doc(
        "where chains start in the free part: 'interpolate' (a scene's straight line, a motion's held last pose) "
        "or 'extrapolate' (constant velocity after the last observed time)", default="interpolate")
    start_noise: float = cfg.non_negative("std of Gaussian noise added to the start's free entries", default=0.1)
    negatives_from: Literal["guess", "data"] = cfg.doc(
        "where the training chains start: the guess (`start`), or the window's own free entries (contrastive "
        "divergence, Hinton 2002: negatives near the data); plus start_noise either way. Completions "
        "(evaluation samples) always start from the guess", default="guess")
    data_noise: float = cfg.non_negative("std of Gaussian noise added to the data's free entries", default=0.0)
    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "chain length of evaluation samples (default: the sampler's n_steps)"})


def chain_start(x: Tensor, observed: Tensor, how: str, noise: float, rng: torch.Generator) -> Tensor:
    """The guess in the free entries of ``x`` (``how = "data"``: ``x``'s own), plus Gaussian noise
    of std ``noise`` there."""
    start = x if how == "data" else guess(x, observed, how)  # type: ignore[arg-type]
    if noise:
        start = start + noise * torch.randn(x.shape, generator=rng, device=rng.device).to(x.device)
    return torch.where(observed, x, start)


class ConditionalMLE(Objective):
    completes = True

    def __init__(self, energy, sampler, contexts: Batch, c: ConditionalMLEConfig, device):
        super().__init__()
        self.energy, self.sampler, self.c = energy, sampler, c
        self.contexts, self.device = contexts, torch.device(device)

    @classmethod
    def from_config(cls, c: ConditionalMLEConfig, ctx) -> ConditionalMLE:
        who = "objective 'conditional_mle'"
        data = ctx.require("data", who)
        held = data.heldout()
        if held is None or held.cond is None or held.cond.dtype != torch.bool or held.cond.shape != held.x.shape:
            raise EbmError(f"{who} needs data whose batches carry the observed mask as cond (data 'mocap', "
                           f"'navigation'), with a held-out split")
        sampler = one_row_per_chain(ctx.require("sampler", who), who)
        return cls(ctx.require("energy", who), sampler, held, c, ctx.device)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x, observed = batch
        if observed is None or observed.dtype != torch.bool:
            raise EbmError("objective 'conditional_mle' needs the observed mask as the batch's cond")
        if self.c.data_noise:
            x = torch.where(observed, x, x + self.c.data_noise * torch.randn(x.shape, generator=rng,
                                                                            device=rng.device).to(x.device))
        how = "data" if self.c.negatives_from == "data" else self.c.start
        x0 = chain_start(x, observed, how, self.c.start_noise, rng)
        x_neg = self.sampler.run(x0, self.energy, rng=rng, mask=observed)
        loss, metrics = maximum_likelihood_loss(self.energy, x, x_neg, None, self.c.alpha)
        return {"energy": loss}, metrics

    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """Samples of the missing entries given the rest: masked chains from the guess."""
        observed = ~missing
        x0 = chain_start(x, observed, self.c.start, self.c.start_noise, rng)
        return self.sampler.run(x0, self.energy, n_steps, rng=rng, mask=observed)

    def sample(self, n, *, rng, cond=None):
        idx = spread(n, len(self.contexts.x))
        x, observed = self.contexts.x[idx].to(self.device), self.contexts.cond[idx].to(self.device)
        return self.complete(x, ~observed, rng=rng, n_steps=self.c.sample_steps)
