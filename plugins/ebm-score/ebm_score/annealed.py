"""Annealed Langevin dynamics of NCSN (Song & Ermon 2019, Algorithm 1) over a noise-conditional
energy E(x, k).

For each level k from the noisiest (σ_max) down to level 0 (σ_min), ``steps_per_level``
steps of

    x ← x − α_k·∇ₓE(x, k) + √(2α_k)·ξ,    α_k = ε·σ_k²/σ_min²,

i.e. x + α_k·s(x, k) + √(2α_k)·ξ with the score s = −∇ₓE; ε is ``step_lr``. With
``denoise`` one more step follows, Tweedie's denoising x ← x − σ_min²·∇ₓE(x, 0) without
noise (the posterior mean of the clean x given x at noise σ_min; Jolicoeur-Martineau et al.
2021 show that the Fréchet distance depends on it).

This is not ``ebm-langevin``'s ``annealed_langevin``, which anneals a *temperature* of one
energy: here each level is another energy (the model of the data smoothed by σ_k), chosen by
the level the kernel hands the energy as ``cond``. The energy must therefore say
``condition = Condition.LEVEL`` (``level_mlp``, ``level_cnn``); the kernel sets the level
itself and refuses a ``cond`` from its caller.

The state carries the step counter as a 0-d tensor, so a compiled chain is not specialised
on it; every step draws one normal (multiplied by 0 in the denoising step), so the draws
are the same at every step. Steps past the schedule repeat its last step.
"""

import math
from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebm_score.ladder import (
    check_ladder,
    levels_field,
    sigma_max_field,
    sigma_min_field,
)
from ebmcore import Condition, EbmError, Energy, Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import normal_like
from ebmcore.kit.offgraph import off_graph


def _whole_schedule(inst, _attr, value) -> None:
    total = inst.levels * inst.steps_per_level + inst.denoise
    if value is not None and value != total:
        raise ValueError(f"must equal levels · steps_per_level + denoise = {inst.levels} · {inst.steps_per_level} "
                         f"+ {int(inst.denoise)} = {total}, the whole schedule (leave it unset to take that), "
                         f"got {value}")


@attrs.frozen
class AnnealedScoreLangevinConfig:
    """Annealed Langevin dynamics of NCSN over a noise-conditional energy E(x, level), noisiest level first."""

    sigma_max: float = sigma_max_field()
    sigma_min: float = sigma_min_field()
    levels: int = levels_field()
    steps_per_level: int = cfg.positive("Langevin steps T at each level (Song & Ermon: 100)", default=100)
    step_lr: float = cfg.positive("ε: level k's step is α_k = ε·σ_k²/σ_min² (Song & Ermon: 2e-5)", default=2e-5)
    denoise: bool = cfg.doc("end with one Tweedie denoising step x − σ_min²·∇E(x, 0), without noise",
                            default=True)
    n_steps: int | None = attrs.field(
        default=None, validator=_whole_schedule,
        metadata={"doc": "chain length: levels · steps_per_level (+ 1 with denoise); if given, it must equal it"})
    compile: bool = cfg.compile_flag()

    def __attrs_post_init__(self):
        check_ladder(self.sigma_max, self.sigma_min)


class AnnealedScoreState(NamedTuple):
    """Position, and the number of steps taken (0-d integer tensor): it sets the level."""

    x: Tensor
    t: Tensor


class AnnealedScoreInfo(NamedTuple):
    """Energy per chain at the start of the step (at its level), the gradient it used, and
    the level's σ (0-d)."""

    energy: Tensor
    grad: Tensor
    sigma: Tensor


class AnnealedScoreLangevin(Sampler):
    """NCSN's annealed Langevin kernel; one energy gradient per step."""

    Config = AnnealedScoreLangevinConfig

    @property
    def n_steps(self) -> int:
        c = self.config
        return c.levels * c.steps_per_level + c.denoise

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None) -> AnnealedScoreState:
        # a plain function (or a wrapper the loop made) declares nothing and is taken as it is
        if isinstance(energy, Energy) and energy.condition is not Condition.LEVEL:
            raise EbmError(f"sampler 'annealed_score_langevin' needs an energy conditioned on the noise level "
                           f"(level_mlp, level_cnn: condition = 'level', trained by objective 'ncsn'), got "
                           f"{type(energy).__name__} with condition = '{energy.condition.value}'")
        if cond is not None:
            raise EbmError("sampler 'annealed_score_langevin' conditions the energy on its own noise level; "
                           "it takes no cond")
        return AnnealedScoreState(x, torch.zeros((), dtype=torch.long, device=x.device))

    @off_graph
    def step(self, state: AnnealedScoreState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None,
             ) -> tuple[AnnealedScoreState, AnnealedScoreInfo]:
        c, x = self.config, state.x
        annealing = c.levels * c.steps_per_level
        # level L−1 for the first T steps, …, level 0 for the last T (and after)
        level = (c.levels - 1 - torch.clamp(state.t // c.steps_per_level, max=c.levels - 1))
        log_ratio = math.log(c.sigma_max / c.sigma_min) / (c.levels - 1)
        rel2 = torch.exp(level.to(x.dtype) * (2 * log_ratio))  # σ_k²/σ_min²
        denoising = (state.t >= annealing) if c.denoise else torch.zeros((), dtype=torch.bool, device=x.device)
        alpha = torch.where(denoising, torch.full_like(rel2, c.sigma_min**2), c.step_lr * rel2)
        noise = torch.where(denoising, torch.zeros_like(alpha), (2 * alpha).sqrt())
        e, g = energy_and_grad(energy, x, level.expand(x.shape[0]))
        x_new = x - alpha * g + noise * normal_like(x, rng)
        if mask is not None:
            x_new = torch.where(mask, x, x_new)
        return AnnealedScoreState(x_new, state.t + 1), AnnealedScoreInfo(e, g, c.sigma_min * rel2.sqrt())
