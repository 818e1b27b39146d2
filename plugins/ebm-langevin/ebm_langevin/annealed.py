"""Annealed Langevin dynamics: ULA whose noise is annealed down to the target's.

Level l of L runs ``steps_per_level`` steps of x ← x − s·∇E(x) + sqrt(2·s·T_l)·ξ, with
temperatures T_1 > … > T_L = 1 geometric from ``max_temperature``: ULA on exp(−E/T_l) with
step s·T_l, so the drift step is the same at every level and only the noise shrinks, as in
Song & Ermon's annealed Langevin (step ∝ σ², here σ² ∝ T). Hot levels cross barriers that
ULA at T = 1 does not; the last level is ULA on the target itself. With
``max_temperature = 1`` every level is ULA (the same chain, bit for bit, for the same rng).

The schedule is the chain: ``n_steps`` is n_levels · steps_per_level. The state carries the
step index as a tensor, so a compiled chain is not specialised on it; steps past the
schedule stay at T = 1, and a chain stopped early ends at the temperature it reached.
(Annealing by ``run_chain``'s ``temperatures`` re-initialises the state, restarting this
schedule: use one or the other.)
"""

import math
from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import normal_like
from ebmcore.kit.offgraph import off_graph


def _whole_schedule(inst, _attr, value) -> None:
    total = inst.n_levels * inst.steps_per_level
    if value is not None and value != total:
        raise ValueError(f"must equal n_levels · steps_per_level = {inst.n_levels} · {inst.steps_per_level} = "
                         f"{total}, the whole schedule (leave it unset to take that), got {value}")


@attrs.frozen
class AnnealedLangevinConfig:
    """Annealed Langevin: ULA with its noise annealed from max_temperature down to 1 in levels."""

    step_size: float = cfg.positive("drift step s (ULA's step at T = 1)", default=0.01)
    n_levels: int = cfg.positive("temperature levels L, geometric from max_temperature down to 1 (1: ULA)", default=10)
    steps_per_level: int = cfg.positive("steps at each level", default=10)
    max_temperature: float = attrs.field(
        default=10.0, validator=attrs.validators.ge(1),
        metadata={"doc": "temperature T_1 of the first level (noise sqrt(2·s·T_1)); 1: plain ULA"})
    n_steps: int | None = attrs.field(
        default=None, validator=_whole_schedule,
        metadata={"doc": "chain length: n_levels · steps_per_level (None: that; if given, it must equal it)"})
    compile: bool = cfg.compile_flag()


class AnnealedLangevinState(NamedTuple):
    """Position, and the number of steps taken (0-d integer tensor): it sets the level."""

    x: Tensor
    t: Tensor


class AnnealedLangevinInfo(NamedTuple):
    """Energy per chain at the start of the step, the gradient it used, and its temperature (0-d)."""

    energy: Tensor
    grad: Tensor
    temperature: Tensor


class AnnealedLangevin(Sampler):
    """Annealed ULA kernel; one energy gradient per step."""

    Config = AnnealedLangevinConfig

    @property
    def n_steps(self) -> int:
        return self.config.n_levels * self.config.steps_per_level

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None) -> AnnealedLangevinState:
        return AnnealedLangevinState(x, torch.zeros((), dtype=torch.long, device=x.device))

    @off_graph
    def step(self, state: AnnealedLangevinState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None,
             ) -> tuple[AnnealedLangevinState, AnnealedLangevinInfo]:
        c, x = self.config, state.x
        last = c.n_levels - 1
        level = torch.clamp(state.t // c.steps_per_level, max=last)
        # sqrt(T_l) = T_max^((L − 1 − l) / (2(L − 1))): exactly 1 at the last level and for T_max = 1
        rate = 0.5 * math.log(c.max_temperature) / last if last else 0.0
        sqrt_t = torch.exp((last - level).to(x.dtype) * rate)
        e, g = energy_and_grad(energy, x, cond)
        # ULA's operations in ULA's order, the noise scaled first, so T = 1 gives ULA bit for bit
        x_new = torch.add(x, g, alpha=-c.step_size)
        x_new.add_(normal_like(x, rng).mul_(sqrt_t), alpha=math.sqrt(2 * c.step_size))
        if mask is not None:
            x_new = torch.where(mask, x, x_new)
        return AnnealedLangevinState(x_new, state.t + 1), AnnealedLangevinInfo(e, g, sqrt_t.square())
