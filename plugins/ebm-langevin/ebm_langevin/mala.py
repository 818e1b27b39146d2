"""Metropolis-adjusted Langevin (MALA): a ULA proposal with a Metropolis–Hastings correction.

Proposal x' = x − s·∇E(x)/T + sqrt(2s)·ξ, ξ ~ N(0, I), i.e. q(x'|x) = N(x − s·∇E(x)/T, 2s·I);
accepted per chain with probability min(1, π(x') q(x|x') / (π(x) q(x'|x))), π ∝ exp(−E/T).
The correction removes ULA's step-size bias: the chain's stationary law is π exactly, at
any step size (a large step only lowers the acceptance).

The state carries E(x) and ∇E(x): ``init`` computes them once, and an accepted proposal's
energy and gradient, computed for the ratio anyway, become the state's. A chain of n steps
costs n + 1 gradients.
"""

from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import metropolis, normal_like, select


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

    def init(self, x: Tensor, energy: nn.Module, cond: Tensor | None = None) -> MALAState:
        return MALAState(x, *energy_and_grad(energy, x, cond))

    def step(self, state: MALAState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[MALAState, MALAInfo]:
        if torch.is_grad_enabled():
            with torch.no_grad():  # called outside run_chain: keep the update off the graph
                return self.step(state, energy, rng=rng, cond=cond, mask=mask)
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
