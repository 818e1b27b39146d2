"""Masked maximum likelihood: a completion model. Each update hides a random share of every
training example's entries and takes the negatives from masked chains over the hidden
entries only, started from uniform noise there, the rest held fixed bit for bit:

    ∇θ = E_data[∇θE(x)] − E[∇θE(x̃)],  x̃ = x with its hidden entries sampled given the others.

The energy learns what the observed part says about the missing part, so completing held-out
examples (recovery, inpainting) by the same masked chains is what it is trained for; its
samples from nothing observed are not (an unconditional model is ``mle``'s). ``sample`` (the
run's evaluation samples) therefore completes the data's held-out examples with a fresh
mask: its sample metrics score completions, not samples.
"""

import attrs
import torch
from torch import Tensor

from ebm_mle.generators import below_high
from ebmcore import Batch, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.losses import maximum_likelihood_loss
from ebmcore.kit.replicas import one_row_per_chain


@attrs.frozen
class MaskedMLEConfig:
    """Maximum likelihood of hidden entries given the rest: masked chains from noise as negatives."""

    share: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                               metadata={"doc": "the share of each example's entries hidden, each "
                                                "independently, in (0, 1)"})
    low: float = attrs.field(default=-1.0, validator=below_high,
                             metadata={"doc": "hidden entries start uniform on [low, high]"})
    high: float = cfg.doc("upper bound of the start", default=1.0)
    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    data_noise: float = cfg.non_negative("std of Gaussian noise added to the hidden entries of the data",
                                         default=0.0)
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "chain length of completions (default: the sampler's n_steps)"})


class MaskedMaximumLikelihood(Objective):
    completes = True

    def __init__(self, energy, sampler, heldout: Tensor, c: MaskedMLEConfig, device):
        super().__init__()
        self.energy, self.sampler, self.c = energy, sampler, c
        self.heldout, self.device = heldout, torch.device(device)

    @classmethod
    def from_config(cls, c: MaskedMLEConfig, ctx) -> "MaskedMaximumLikelihood":
        who = "objective 'masked_mle'"
        data = ctx.require("data", who)
        if data.conditional:
            raise EbmError(f"{who} completes unconditional data; this data set is conditional")
        held = data.heldout()
        examples = (held if held is not None else data.dataset()).x
        sampler = one_row_per_chain(ctx.require("sampler", who), who)
        return cls(ctx.require("energy", who), sampler, examples, c, ctx.device)

    def param_groups(self):
        return {"energy": self.energy}

    def hide(self, x: Tensor, *, rng) -> Tensor:
        """A fresh mask: True where an entry of ``x`` is hidden, each with probability ``share``."""
        return torch.rand(x.shape, generator=rng, device=rng.device).to(x.device) < self.c.share

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        missing = self.hide(x, rng=rng)
        if self.c.data_noise:
            noise = torch.randn(x.shape, generator=rng, device=rng.device).to(x.device)
            x = torch.where(missing, x + self.c.data_noise * noise, x)
        x_neg = self.complete(x, missing, rng=rng)
        loss, metrics = maximum_likelihood_loss(self.energy, x, x_neg, None, self.c.alpha)
        return {"energy": loss}, metrics

    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """Masked chains over the ``missing`` entries from uniform noise, the others held."""
        u = torch.rand(x.shape, generator=rng, device=rng.device).to(x.device)
        x0 = torch.where(missing, self.c.low + (self.c.high - self.c.low) * u, x)
        return self.sampler.run(x0, self.energy, n_steps, rng=rng, mask=~missing)

    def sample(self, n, *, rng, cond=None):
        x = self.heldout[torch.arange(n) % len(self.heldout)].to(self.device)
        return self.complete(x, self.hide(x, rng=rng), rng=rng, n_steps=self.c.sample_steps)
