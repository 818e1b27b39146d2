"""Noise-conditional score networks as energies (Song & Ermon 2019): denoising score matching
at every level of a geometric noise ladder (:mod:`ebm_score.ladder`), one network E(x, k)
told the level, and sampling by annealed Langevin dynamics (:mod:`ebm_score.annealed`).

Each example gets one random level k; the loss is Σ λ(σ_k)·DSM_k with λ(σ) = σ², i.e. the
mean of ½‖σ_k·s(x̃, k) + ε‖², x̃ = x + σ_k·ε, s = −∇ₓE. No MCMC in training: the chains
run only in :meth:`NCSN.sample`, with the recipe's sampler from the generator's fresh starts;
``annealed_score_langevin`` is the paper's, and must use this ladder (a mismatch is an
error naming both keys). Any other sampler samples the least noisy level's energy (the
level energies' default without a level).
"""

import attrs
import torch
from torch import nn

from ebm_score.annealed import AnnealedScoreLangevin
from ebm_score.energies import ResidualCNN
from ebm_score.ladder import (
    check_ladder,
    levels_field,
    sigma_max_field,
    sigma_min_field,
    sigmas,
)
from ebm_score.objectives import ScoreObjective, antithetic_field, sample_steps_field
from ebm_score.score import antithetic
from ebmcore import Batch, Condition, EbmError
from ebmcore.kit.losses import denoising_loss


@attrs.frozen
class NCSNConfig:
    """NCSN (Song & Ermon 2019): DSM at every level of a geometric noise ladder, one energy E(x, level)."""

    sigma_max: float = sigma_max_field()
    sigma_min: float = sigma_min_field()
    levels: int = levels_field()
    antithetic: bool = antithetic_field()
    sample_steps: int | None = sample_steps_field()

    def __attrs_post_init__(self):
        check_ladder(self.sigma_max, self.sigma_min)


def _same_ladder(section: str, must: str, theirs: dict, ours: dict) -> None:
    """Refuse a component whose ladder (sigma_max, sigma_min, levels) is not the objective's."""
    differ = [f"$.{section}.{k} = {theirs[k]!r} but $.objective.{k} = {v!r}"
              for k, v in ours.items() if theirs[k] != v]
    if differ:
        raise EbmError(f"{must} the ladder objective 'ncsn' learns: {'; '.join(differ)}")


class NCSN(ScoreObjective):
    name = "ncsn"

    def __init__(self, energy: nn.Module, sampler, generator, *, sigma_max: float = 1.0, sigma_min: float = 0.01,
                 levels: int = 10, antithetic: bool = False, sample_steps: int | None = None):
        if energy.condition is not Condition.LEVEL:
            raise EbmError(f"objective 'ncsn' needs an energy conditioned on the noise level ($.energy.type = "
                           f"'level_mlp', 'level_cnn' or 'residual_cnn': condition = 'level'), got "
                           f"{type(energy).__name__} with condition = '{energy.condition.value}'")
        ours = {"sigma_max": sigma_max, "sigma_min": sigma_min, "levels": levels}
        if isinstance(sampler, AnnealedScoreLangevin):
            c = sampler.config
            _same_ladder("sampler", "sampler 'annealed_score_langevin' must anneal over",
                         {"sigma_max": c.sigma_max, "sigma_min": c.sigma_min, "levels": c.levels}, ours)
        if isinstance(energy, ResidualCNN):
            _same_ladder("energy", "energy 'residual_cnn' must scale by", energy.ladder, ours)
        super().__init__(energy, sampler, generator, sample_steps=sample_steps)
        self.levels, self.antithetic = levels, antithetic
        # deterministic from the config: not checkpointed, but moved with the module
        self.register_buffer("sigmas", sigmas(sigma_max, sigma_min, levels).float(), persistent=False)

    @classmethod
    def from_config(cls, c: NCSNConfig, ctx) -> "NCSN":
        return cls(*cls._parts(ctx), sigma_max=c.sigma_max, sigma_min=c.sigma_min, levels=c.levels,
                   antithetic=c.antithetic, sample_steps=c.sample_steps)

    def loss(self, batch: Batch, *, rng):
        x, cond = batch
        if cond is not None:
            raise EbmError("objective 'ncsn' conditions the energy on the noise level and takes no labels: "
                           "set $.data.conditional = false")
        k = torch.randint(0, self.levels, (len(x),), generator=rng, device=x.device)
        noise = torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        if self.antithetic:
            x, noise, k = antithetic(x, noise, k)
        sigma = self.sigmas[k].to(x.dtype).view(-1, *(1,) * (x.dim() - 1))
        per_example, e = denoising_loss(self.energy, x, sigma, noise, k)
        loss = per_example.mean()
        least = k == 0  # how well the level samples end at is learned
        return {"energy": loss}, {
            "loss/ncsn": loss.detach(), "energy/data": e.mean().detach(),
            "loss/level0": (per_example * least).sum().detach() / least.sum().clamp(min=1)}
