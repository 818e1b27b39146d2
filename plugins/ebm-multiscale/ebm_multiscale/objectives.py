"""Maximum likelihood at every scale of a pyramid: one loss and one optimizer per scale.

At scale r the data are the images average-pooled to r×r and the negatives are the
pyramid sampler's samples at r (Gao et al. 2018 train all grids jointly this way).

Fresh chains (evaluation, ``ebm sample``) start, with ``fresh_start = "data"``, from the
training images pooled to the coarsest grid, drawn at random: Gao et al.'s 1×1 model is
the histogram of the training images' 1×1 versions. With ``"generator"`` they start from
the generator's fresh noise pooled to the coarsest grid — which, for noise, is nearly the
same constant image for every chain (the mean of 4,096 uniform pixels varies by ±0.01), so
noise-free kernels then give nearly identical samples.
"""

from typing import Literal

import attrs
import torch

from ebm_multiscale.energies import check_pyramid, resize
from ebmcore import Batch, Objective, PyramidSampler
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain


@attrs.frozen
class MultiScaleMLEConfig:
    """Maximum likelihood at every resolution of a multi-scale energy (groups scale<r>)."""

    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser at each scale", default=0.0)
    fresh_start: Literal["generator", "data"] = cfg.doc(
        "where fresh chains start at the coarsest grid: 'generator' (its fresh noise, pooled) or 'data' "
        "(training images pooled to the coarsest grid, drawn at random: Gao et al.'s histogram model)",
        default="generator")


class MultiScaleMLE(Objective):
    def __init__(self, energy, sampler, generator, *, alpha: float = 0.0, coarse_data: torch.Tensor | None = None):
        """``coarse_data``: training images; when given, fresh chains start from them pooled to
        the coarsest grid (stored as the buffer ``coarse_data``, so checkpoints carry it)."""
        super().__init__()
        self.resolutions = check_pyramid(energy, "objective 'mle_multiscale'")
        if not isinstance(sampler, PyramidSampler):
            raise TypeError("objective 'mle_multiscale' needs a pyramid sampler (multigrid, coarse_to_fine)")
        self.energy, self.sampler, self.generator, self.alpha = energy, sampler, generator, alpha
        if coarse_data is not None:
            self.register_buffer("coarse_data", resize(coarse_data.detach().float(), self.resolutions[0]).clone())
        else:
            self.coarse_data = None

    @classmethod
    def from_config(cls, c: MultiScaleMLEConfig, ctx) -> "MultiScaleMLE":
        who = "objective 'mle_multiscale'"
        coarse = ctx.require("data", who).dataset().x if c.fresh_start == "data" else None
        return cls(ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.require("generator", who),
                   alpha=c.alpha, coarse_data=coarse)

    def param_groups(self):
        return {f"scale{r}": self.energy.energies[str(r)] for r in self.resolutions}

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        x0 = self.generator.sample(len(x), rng=rng, cond=batch.cond, data=x)
        samples = self.sampler.run_pyramid(x0, self.energy, rng=rng)
        losses, metrics = {}, {}
        for r, neg in zip(self.resolutions[-len(samples):], samples, strict=True):
            e = self.energy(torch.cat([resize(x, r), neg]))
            e_pos, e_neg = e[:len(x)], e[len(x):]
            loss = e_pos.mean() - e_neg.mean()
            if self.alpha:
                loss = loss + self.alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()
            losses[f"scale{r}"] = loss
            metrics[f"energy/data@{r}"] = e_pos.mean().detach()
            metrics[f"energy/sample@{r}"] = e_neg.mean().detach()
        self.generator.update(samples[-1])
        return losses, metrics

    def fresh(self, n, *, rng, cond=None):
        """Starting points of fresh chains (full-size images; the sampler pools them)."""
        x0 = self.generator.fresh(n, rng=rng, cond=cond)
        if self.coarse_data is None:
            return x0
        idx = torch.randint(0, len(self.coarse_data), (n,), generator=rng, device=self.coarse_data.device)
        # nearest upsampling: the sampler pools it back to the coarse image
        return resize(self.coarse_data[idx], x0.shape[-1]).to(x0.dtype)

    def sample(self, n, *, rng, cond=None):
        return self.sampler.run(self.fresh(n, rng=rng, cond=cond), self.energy, rng=rng)
