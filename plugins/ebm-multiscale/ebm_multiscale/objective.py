"""Maximum likelihood at every scale of a pyramid: one loss and one optimizer per scale.

At scale r the data are the images average-pooled to r×r and the negatives are the
pyramid sampler's samples at r (Gao et al. 2018 train all grids jointly this way).
"""

import attrs
import torch

from ebmcore import Batch, Objective
from ebmcore import config as cfg
from ebm_multiscale.energy import check_pyramid, resize


@attrs.frozen
class MultiScaleMLEConfig:
    """Maximum likelihood at every resolution of a multi-scale energy (groups scale<r>)."""

    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser at each scale", default=0.0)


class MultiScaleMLE(Objective):
    def __init__(self, energy, sampler, generator, *, alpha: float = 0.0):
        super().__init__()
        self.resolutions = check_pyramid(energy, "objective 'mle_multiscale'")
        if not hasattr(sampler, "run_pyramid"):
            raise TypeError("objective 'mle_multiscale' needs a pyramid sampler (multigrid, coarse_to_fine)")
        self.energy, self.sampler, self.generator, self.alpha = energy, sampler, generator, alpha

    @classmethod
    def from_config(cls, c: MultiScaleMLEConfig, ctx) -> "MultiScaleMLE":
        who = "objective 'mle_multiscale'"
        return cls(ctx.require("energy", who), ctx.require("sampler", who), ctx.require("generator", who),
                   alpha=c.alpha)

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

    def sample(self, n, *, rng, cond=None):
        return self.sampler.run(self.generator.fresh(n, rng=rng, cond=cond), self.energy, rng=rng)
