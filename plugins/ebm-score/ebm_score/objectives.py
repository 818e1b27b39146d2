"""Score-matching objectives: energies learned through their score s = −∇ₓE, with no MCMC
in training.

- ``dsm``: denoising score matching at one noise level σ (Vincent 2011). The optimum is the
  score of the data smoothed by N(0, σ²I): a Gaussian N(μ, Σ) is learned as N(μ, Σ + σ²I).
- ``ssm``: sliced score matching (Song, Garg, Shi & Ermon 2019): Hyvärinen's tr ∇ₓs + ½‖s‖²
  with the trace estimated by random projections v, E[vᵀ∇ₓs v] = tr ∇ₓs. The data's own
  score, unsmoothed; each projection costs one more backward pass.
- ``ncsn``: multi-level DSM over NCSN's geometric ladder (Song & Ermon 2019), in
  :mod:`ebm_score.ncsn`.

Every model is an energy: ``sample`` runs the recipe's sampler from the generator's fresh
starts, like ``mle``'s, and any ebm sampler or task can use the energy.
"""

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebm_score.annealed import AnnealedScoreLangevin
from ebm_score.score import antithetic
from ebmcore import Batch, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.losses import denoising_loss, score
from ebmcore.kit.replicas import one_row_per_chain


def antithetic_field():
    return cfg.doc("draw the noise in antithetic pairs ε, −ε (each example twice): the term of the loss whose "
                   "variance grows as 1/σ² cancels in each pair (off: one draw per example, as the papers)",
                   default=False)


def sample_steps_field():
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": "chain length of evaluation chains (default: the sampler's n_steps)"})


@attrs.frozen
class DSMConfig:
    """Denoising score matching at one noise level (Vincent 2011): learns the data smoothed by N(0, σ²I)."""

    sigma: float = cfg.positive("noise σ of x̃ = x + σ·ε; the loss is weighted by σ²", default=0.1)
    antithetic: bool = antithetic_field()
    sample_steps: int | None = sample_steps_field()


@attrs.frozen
class SSMConfig:
    """Sliced score matching (Song et al. 2019): tr ∇ₓs + ½‖s‖², the trace by random projections."""

    projections: int = cfg.positive("random projections v per example (each one more backward pass)", default=1)
    projection: Literal["rademacher", "gaussian"] = cfg.doc(
        "distribution of v: ±1 entries or N(0, I) (both have E[vvᵀ] = I)", default="rademacher")
    variance_reduced: bool = cfg.doc(
        "SSM-VR: ½‖s‖² exactly instead of its projection ½(vᵀs)² (lower variance, the paper's choice)",
        default=True)
    data_noise: float = cfg.non_negative(
        "std of Gaussian noise added to each data batch: the model learns the data smoothed by it, as objective "
        "'mle' (sharp modes are otherwise sharper than a Langevin sampler resolves)", default=0.0)
    sample_steps: int | None = sample_steps_field()


class ScoreObjective(Objective):
    """What the score objectives share: the energy they train, and sampling by fresh chains."""

    name: str

    def __init__(self, energy: nn.Module, sampler, generator, *, sample_steps: int | None = None):
        super().__init__()
        self.energy, self.sampler, self.generator, self.sample_steps = energy, sampler, generator, sample_steps

    @classmethod
    def _parts(cls, ctx) -> tuple:
        who = f"objective '{cls.name}'"
        return ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.require("generator", who)

    def param_groups(self):
        return {"energy": self.energy}

    def sample(self, n, *, rng, cond=None):
        x0 = self.generator.fresh(n, rng=rng, cond=cond)
        return self.sampler.run(x0, self.energy, self.sample_steps, rng=rng, cond=cond)


def _refuse_level_sampler(name: str, sampler) -> None:
    if isinstance(sampler, AnnealedScoreLangevin):
        raise EbmError(f"objective '{name}' learns one energy of x, which sampler 'annealed_score_langevin' "
                       "cannot anneal over noise levels: use it with objective 'ncsn', or set "
                       "$.sampler.type = 'langevin'")


class DenoisingScoreMatching(ScoreObjective):
    name = "dsm"

    def __init__(self, energy, sampler, generator, *, sigma: float = 0.1, antithetic: bool = False,
                 sample_steps: int | None = None):
        _refuse_level_sampler(self.name, sampler)
        super().__init__(energy, sampler, generator, sample_steps=sample_steps)
        self.sigma, self.antithetic = sigma, antithetic

    @classmethod
    def from_config(cls, c: DSMConfig, ctx) -> "DenoisingScoreMatching":
        return cls(*cls._parts(ctx), sigma=c.sigma, antithetic=c.antithetic, sample_steps=c.sample_steps)

    def loss(self, batch: Batch, *, rng):
        x, cond = batch
        noise = torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        if self.antithetic:
            x, noise, cond = antithetic(x, noise, cond)
        per_example, e = denoising_loss(self.energy, x, self.sigma, noise, cond)
        loss = per_example.mean()
        return {"energy": loss}, {"loss/dsm": loss.detach(), "energy/data": e.mean().detach()}


class SlicedScoreMatching(ScoreObjective):
    name = "ssm"

    def __init__(self, energy, sampler, generator, *, projections: int = 1, projection: str = "rademacher",
                 variance_reduced: bool = True, data_noise: float = 0.0, sample_steps: int | None = None):
        _refuse_level_sampler(self.name, sampler)
        super().__init__(energy, sampler, generator, sample_steps=sample_steps)
        self.projections, self.projection, self.variance_reduced = projections, projection, variance_reduced
        self.data_noise = data_noise

    @classmethod
    def from_config(cls, c: SSMConfig, ctx) -> "SlicedScoreMatching":
        return cls(*cls._parts(ctx), projections=c.projections, projection=c.projection,
                   variance_reduced=c.variance_reduced, data_noise=c.data_noise, sample_steps=c.sample_steps)

    def _directions(self, like: Tensor, rng: torch.Generator) -> Tensor:
        if self.projection == "gaussian":
            return torch.randn(like.shape, generator=rng, device=like.device, dtype=like.dtype)
        return torch.randint(0, 2, like.shape, generator=rng, device=like.device).to(like.dtype) * 2 - 1

    def loss(self, batch: Batch, *, rng):
        x, cond = batch
        if self.data_noise:
            x = x + self.data_noise * torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        m = self.projections
        # each example once per projection, projection-major, as Song et al.'s code
        x = x.repeat(m, *(1,) * (x.dim() - 1)).detach().requires_grad_(True)
        cond = None if cond is None else cond.repeat(m, *(1,) * (cond.dim() - 1))
        v = self._directions(x, rng)
        s, e = score(self.energy, x, cond)
        sv = (s * v).flatten(1).sum(1)
        (grad_sv,) = torch.autograd.grad(sv.sum(), x, create_graph=True)  # (∇ₓs)ᵀv
        trace = (grad_sv * v).flatten(1).sum(1)  # vᵀ∇ₓs v: E over v is tr ∇ₓs
        norm = 0.5 * s.flatten(1).pow(2).sum(1) if self.variance_reduced else 0.5 * sv.pow(2)
        loss = (trace + norm).mean()
        return {"energy": loss}, {"loss/ssm": loss.detach(), "ssm/trace": trace.mean().detach(),
                                  "ssm/norm": norm.mean().detach(), "energy/data": e.mean().detach()}
