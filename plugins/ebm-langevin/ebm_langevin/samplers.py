"""Langevin samplers: unadjusted (ULA) and Metropolis-adjusted (MALA).

ULA: x ← x − s·∇E(x)/T + σ·ξ, ξ ~ N(0, I). With σ = sqrt(2·s) (the default) this is the
discretisation of the Langevin diffusion whose stationary law is p(x) ∝ exp(−E(x)/T). The
papers' decoupled settings (a large step with a small noise, e.g. IGEBM's s = 10,
σ = 0.005) are the same formula with both given.

MALA: the ULA proposal x' = x − s·∇E(x)/T + sqrt(2s)·ξ, i.e. q(x'|x) = N(x − s·∇E(x)/T,
2s·I), accepted per chain with probability min(1, π(x') q(x|x') / (π(x) q(x'|x))),
π ∝ exp(−E/T). The correction removes ULA's step-size bias: the chain's stationary law is π
exactly, at any step size (a large step only lowers the acceptance). The state carries E(x)
and ∇E(x): ``init`` computes them once, and an accepted proposal's energy and gradient,
computed for the ratio anyway, become the state's. A chain of n steps costs n + 1 gradients.
"""

import math
from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import metropolis, normal_like, select
from ebmcore.kit.offgraph import off_graph


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
        default=None, validator=cfg.low_below_high, metadata={"doc": "clamp x to [low, high] after each step"})
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

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> LangevinState:
        return LangevinState(x)

    @off_graph
    def step(self, state: LangevinState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[LangevinState, LangevinInfo]:
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


@attrs.frozen
class MALAConfig:
    """Metropolis-adjusted Langevin (MALA): ULA proposals with an exact accept/reject step."""

    step_size: float = cfg.positive("step s: proposal x − s·∇E/T + sqrt(2s)·ξ", default=0.01)
    n_steps: int = cfg.positive("chain length", default=60)
    temperature: float = cfg.positive("temperature T: samples exp(−E/T)", default=1.0)
    compile: bool = cfg.compile_flag()


class MALAState(NamedTuple):
    """Position, and energy (batch,) and gradient ∇E (like x) at it."""

    x: Tensor
    energy: Tensor
    grad: Tensor


class MALAInfo(NamedTuple):
    """Per chain: the acceptance probability min(1, ratio) (0 where the ratio is NaN), and
    whether the proposal was accepted."""

    acceptance_prob: Tensor
    accepted: Tensor


class MALA(Sampler):
    """MALA kernel; one energy gradient per step (plus one in ``init``)."""

    Config = MALAConfig

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> MALAState:
        return MALAState(x, *energy_and_grad(energy, x, cond))

    @off_graph
    def step(self, state: MALAState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[MALAState, MALAInfo]:
        x, e, g = state
        s, t = self.config.step_size, self.config.temperature
        drift = -s / t  # x' = x + drift·∇E + sqrt(2s)·ξ
        xi = normal_like(x, rng)
        if mask is not None:
            # move the free coordinates only: the chain targets π(free | observed)
            g = g.masked_fill(mask, 0)
            xi.masked_fill_(mask, 0)
        x_new = torch.add(x, g, alpha=drift).add_(xi, alpha=(2 * s) ** 0.5)
        if mask is not None:
            x_new = torch.where(mask, x, x_new)  # bit-identical, even for −0.0
        e_new, g_new = energy_and_grad(energy, x_new, cond)
        g_new_free = g_new if mask is None else g_new.masked_fill(mask, 0)
        # log MH ratio = (E(x) − E(x'))/T + log q(x|x') − log q(x'|x), with
        # log q(x'|x) = −|ξ|²/2 and log q(x|x') = −|x − x' − drift·∇E(x')|²/(4s) (+ the same constant)
        back = torch.sub(x, x_new).sub_(g_new_free, alpha=drift)
        events = tuple(range(1, x.dim()))  # sum over all but the batch dimension
        log_ratio = torch.sub(e, e_new)
        if t != 1:
            log_ratio.div_(t)
        fwd, bwd = xi.square_(), back.square_()
        if events:
            fwd, bwd = fwd.sum(events), bwd.sum(events)
        log_ratio.add_(fwd, alpha=0.5).sub_(bwd, alpha=1 / (4 * s))
        prob, accepted = metropolis(log_ratio, rng)
        state = MALAState(select(accepted, x_new, x), select(accepted, e_new, e), select(accepted, g_new, state.grad))
        return state, MALAInfo(prob, accepted)
