"""Unadjusted Langevin dynamics: x ← x − s·∇E(x)/T + σ·ξ, ξ ~ N(0, I).

With σ = sqrt(2·s) (the default) this is the ULA discretisation of the Langevin diffusion
whose stationary law is p(x) ∝ exp(−E(x)/T). The papers' decoupled settings (a large step
with a small noise, e.g. IGEBM's s = 10, σ = 0.005) are the same formula with both given.
"""

import math
from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import normal_like


def _clamp_range(_inst, _attr, value):
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"must be [low, high] with low < high, got {list(value)}")


@attrs.frozen
class LangevinConfig:
    """Unadjusted Langevin dynamics (ULA) with optional gradient and value clamping."""

    step_size: float = cfg.positive("step s on the gradient", default=0.01)
    n_steps: int = cfg.positive("chain length", default=60)
    noise: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
        metadata={"doc": "noise scale σ; default sqrt(2·step_size) (exact ULA)"})
    temperature: float = cfg.positive("temperature T: samples exp(−E/T)", default=1.0)
    grad_clamp: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "clamp ∇E element-wise to [−c, c]"})
    clamp: tuple[float, float] | None = attrs.field(
        default=None, validator=_clamp_range, metadata={"doc": "clamp x to [low, high] after each step"})
    compile: bool = cfg.compile_flag()


class LangevinState(NamedTuple):
    """Position (ULA carries nothing else: each step computes its gradient)."""

    x: Tensor


class LangevinInfo(NamedTuple):
    """Energy per chain at the start of the step, and the gradient the step used."""

    energy: Tensor
    grad: Tensor


class Langevin(Sampler):
    """ULA kernel; one energy gradient per step."""

    Config = LangevinConfig

    def __init__(self, config: LangevinConfig | None = None, /, **settings):
        super().__init__(config, **settings)
        c = self.config
        #: σ: the configured noise, or sqrt(2·step_size) (exact ULA)
        self.noise = math.sqrt(2 * c.step_size) if c.noise is None else c.noise

    @property
    def clamp(self) -> tuple[float, float] | None:
        return self.config.clamp

    def init(self, x: Tensor, energy: nn.Module, cond: Tensor | None = None) -> LangevinState:
        return LangevinState(x)

    def step(self, state: LangevinState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[LangevinState, LangevinInfo]:
        if torch.is_grad_enabled():
            # called outside run_chain (which already runs without grad): keep the update
            # off the graph. Entering no_grad only when needed saves its cost on every step.
            with torch.no_grad():
                return self.step(state, energy, rng=rng, cond=cond, mask=mask)
        c, x = self.config, state.x
        e, g = energy_and_grad(energy, x, cond)
        noise = self.noise
        if c.grad_clamp is not None:
            g = g.clamp_(-c.grad_clamp, c.grad_clamp)
        x_new = torch.add(x, g, alpha=-c.step_size / c.temperature)
        if noise > 0:
            x_new.add_(normal_like(x, rng), alpha=noise)
        if c.clamp is not None:
            x_new.clamp_(*c.clamp)
        if mask is not None:
            x_new = torch.where(mask, x, x_new)
        return LangevinState(x_new), LangevinInfo(e, g)
