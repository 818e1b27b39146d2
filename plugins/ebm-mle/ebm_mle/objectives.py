"""Maximum likelihood: ∇θ = E_data[∇θE] − E_model[∇θE], the model expectation taken over
MCMC samples; optionally with the energy-magnitude regulariser α·(E⁺² + E⁻²) (IGEBM)."""

from typing import Literal

import attrs
import torch

from ebmcore import Batch, Objective
from ebmcore import config as cfg
from ebmcore.kit.likelihood import dequantised
from ebmcore.kit.losses import maximum_likelihood_loss


@attrs.frozen
class MLEConfig:
    """Maximum likelihood with MCMC negatives (short-run, persistent or CD by the generator)."""

    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    data_noise: float = cfg.non_negative(
        "std of Gaussian noise added to each data batch (Nijkamp et al. 2019 use 0.03)", default=0.0)
    dequantize: float = cfg.non_negative(
        "width Δ of the data's quantisation bins: each data batch gets uniform noise on [−Δ/2, Δ/2], "
        "so that exp(−E) models the dequantised data, a density (0: off)", default=0.0)
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "chain length of evaluation chains (default: the sampler's n_steps)"})
    eval_chains: Literal["fresh", "persistent"] = cfg.doc(
        "evaluation chains start from fresh noise, or continue chains drawn from the generator "
        "(a replay buffer: the IGEBM convention; say which when reporting)", default="fresh")


class MaximumLikelihood(Objective):
    def __init__(self, energy, sampler, generator, *, alpha: float = 0.0, data_noise: float = 0.0,
                 dequantize: float = 0.0, sample_steps: int | None = None, eval_chains: str = "fresh"):
        super().__init__()
        self.energy, self.generator = energy, generator
        self.sampler = sampler
        self.alpha, self.data_noise, self.dequantize, self.sample_steps = alpha, data_noise, dequantize, sample_steps
        self.eval_chains = eval_chains

    @classmethod
    def from_config(cls, c: MLEConfig, ctx) -> "MaximumLikelihood":
        who = "objective 'mle'"
        return cls(ctx.require("energy", who), ctx.require("sampler", who), ctx.require("generator", who),
                   alpha=c.alpha, data_noise=c.data_noise, dequantize=c.dequantize, sample_steps=c.sample_steps,
                   eval_chains=c.eval_chains)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x_pos, cond = batch
        n = len(x_pos)
        if self.data_noise:
            # a data distribution no sharper than the sampler can resolve: without it the
            # energy keeps sharpening modes that short Langevin chains cannot enter
            x_pos = x_pos + self.data_noise * torch.randn(x_pos.shape, generator=rng, device=x_pos.device)
        x_pos = dequantised(x_pos, self.dequantize, rng)
        # a sampler with replicas (persistent tempering's hotter chains) takes and returns r rows
        # per chain, the target's first: the generator keeps them all, the loss sees the target's
        r = self.sampler.replicas
        x0 = self.generator.sample(n * r, rng=rng, cond=_repeat(cond, r), data=_repeat(x_pos, r))
        x_all = self.sampler.run(x0, self.energy, rng=rng, cond=_repeat(cond, r))
        self.generator.update(x_all)
        x_neg = x_all[:n]
        loss, metrics = maximum_likelihood_loss(self.energy, x_pos, x_neg, cond, self.alpha)
        return {"energy": loss}, metrics

    def sample(self, n, *, rng, cond=None):
        r, cond = self.sampler.replicas, _repeat(cond, self.sampler.replicas)
        if self.eval_chains == "persistent":  # reads the buffer, never writes it
            x0 = self.generator.sample(n * r, rng=rng, cond=cond)
        else:
            x0 = self.generator.fresh(n * r, rng=rng, cond=cond)
        return self.sampler.run(x0, self.energy, self.sample_steps, rng=rng, cond=cond)[:n]


def _repeat(t: torch.Tensor | None, r: int) -> torch.Tensor | None:
    """``t`` for every replica of its row, replica-major (as :attr:`ebmcore.Sampler.replicas` orders them)."""
    return t if t is None or r == 1 else t.repeat(r, *(1,) * (t.dim() - 1))
