"""Maximum likelihood at every scale of a patch pyramid, all scales trained jointly.

Each step, ``chains`` images are synthesised through the whole pyramid (from the
generator's starts, uniform noise in PatchGenCN); at scale s the loss is
f_s(photo at s) − mean f_s(synthesised at s), one optimizer per scale (groups ``scale<s>``).
"""

from __future__ import annotations

import attrs

from ebm_patch.energies import PatchPyramid, resize
from ebm_patch.samplers import PatchPyramidSampler
from ebmcore import Batch, Objective
from ebmcore import config as cfg


@attrs.frozen
class PatchMLEConfig:
    """Maximum likelihood at every scale of a patch pyramid (PatchGenCN; groups scale<s>)."""

    chains: int = cfg.positive("images synthesised per step (the photo is one)", default=4)


class PatchMLE(Objective):
    def __init__(self, energy, sampler, generator, *, chains: int = 4):
        super().__init__()
        if not isinstance(energy, PatchPyramid):
            raise TypeError("objective 'mle_patch' needs a patch pyramid (energy 'patchgencn')")
        if not isinstance(sampler, PatchPyramidSampler):
            raise TypeError("objective 'mle_patch' needs the sampler 'patch_pyramid'")
        self.energy, self.sampler, self.generator, self.chains = energy, sampler, generator, chains

    @classmethod
    def from_config(cls, c: PatchMLEConfig, ctx) -> PatchMLE:
        who = "objective 'mle_patch'"
        return cls(ctx.require("energy", who), ctx.require("sampler", who), ctx.require("generator", who),
                   chains=c.chains)

    def param_groups(self):
        return {f"scale{s}": net for s, net in enumerate(self.energy.nets)}

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        x0 = self.generator.sample(self.chains, rng=rng, data=x.expand(self.chains, *x.shape[1:]))
        samples = self.sampler.run_pyramid(x0, self.energy, rng=rng)
        losses, metrics = {}, {}
        for s, (net, neg) in enumerate(zip(self.energy.nets, samples, strict=True)):
            e_pos, e_neg = net(resize(x, tuple(neg.shape[-2:]))).mean(), net(neg).mean()
            losses[f"scale{s}"] = e_pos - e_neg
            metrics[f"energy/data@{s}"] = e_pos.detach()
            metrics[f"energy/sample@{s}"] = e_neg.detach()
        self.generator.update(samples[-1])
        return losses, metrics

    def sample(self, n, *, rng, cond=None):
        return self.sampler.run(self.generator.fresh(n, rng=rng, cond=cond), self.energy, rng=rng)


__all__ = ["PatchMLE", "PatchMLEConfig"]
