"""Hamiltonian Monte Carlo: leapfrog trajectories with a per-chain Metropolis correction.

H(x, p) = E(x)/T + |p|²/(2m) with momentum p ~ N(0, m·I). Each step draws p, runs
``n_leapfrog`` leapfrog steps of size ε and accepts the end point with probability
min(1, exp(H(start) − H(end))). The state carries E and ∇E, so a leapfrog step costs one
gradient and an HMC step ``n_leapfrog`` (plus one in ``init``).

With ``adapt_steps > 0`` the first ``adapt_steps`` steps of a chain are a warm-up
(:mod:`ebm_hmc.adaptation`): ``adaptation = "step_size"`` tunes ε by dual averaging towards
``target_accept`` mean acceptance; ``"window"`` runs Stan's windows, which also estimate a
diagonal inverse mass M⁻¹ (then p ~ N(0, M) and H = E/T + pᵀM⁻¹p/2); either for all chains
together or for each chain (``adaptation_scope``). After the warm-up ε is fixed at the
dual-averaging average. A chain is only a valid MCMC chain after its warm-up. A fixed ε and
a scalar mass stay Python numbers, so the plain kernel pays for no tensor of them.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebm_hmc.adaptation import (
    DualAveragingState,
    Warmup,
    WindowAdaptationState,
    adapt_steps_field,
    adaptation_field,
    adaptation_scope_field,
    warmup_init,
    warmup_update,
)
from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import metropolis, normal_like, select, uniform_like
from ebmcore.kit.offgraph import off_graph


@attrs.frozen
class HMCConfig:
    """Hamiltonian Monte Carlo with optional step-size (dual averaging) or window (step size and mass) adaptation."""

    step_size: float = cfg.positive("leapfrog step ε (the initial one when adapting)", default=0.1)
    n_leapfrog: int = cfg.positive("leapfrog steps per HMC step (one gradient each)", default=5)
    n_steps: int = cfg.positive("chain length, in HMC steps (warm-up included)", default=60)
    mass: float = cfg.positive("mass m: momentum p ~ N(0, m·I) (until window adaptation estimates one)",
                               default=1.0)
    temperature: float = cfg.positive("temperature T: samples exp(−E/T)", default=1.0)
    jitter: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.lt(1)],
        metadata={"doc": "each chain's ε drawn uniformly from [ε(1 − jitter), ε(1 + jitter)] at every "
                         "step: a fixed trajectory can resonate (turn a direction by ≈ π and stay "
                         "there), a jittered one cannot; 0: off"})
    adapt_steps: int = adapt_steps_field()
    target_accept: float = attrs.field(
        default=0.65, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
        metadata={"doc": "mean acceptance probability the adaptation aims at"})
    adaptation: Literal["step_size", "window"] = adaptation_field("step_size")
    adaptation_scope: Literal["pooled", "per_chain"] = adaptation_scope_field()
    compile: bool = cfg.compile_flag()


class HMCState(NamedTuple):
    """Position, energy (batch,) and ∇E at it; the step size ε for the next step (0-d, or
    (batch,) when adapted per chain); the warm-up's state while adapting, else None; the
    diagonal inverse mass window adaptation estimated (broadcasts against x), else None."""

    x: Tensor
    energy: Tensor
    grad: Tensor
    step_size: Tensor
    adaptation: DualAveragingState | WindowAdaptationState | None = None
    inv_mass: Tensor | None = None


class HMCInfo(NamedTuple):
    """Per chain: acceptance probability min(1, exp(−ΔH)) (0 where ΔH is NaN) and whether
    the proposal was accepted; the step size ε this step used (0-d, or (batch,))."""

    acceptance_prob: Tensor
    accepted: Tensor
    step_size: Tensor


def _per_chain(t: Tensor, events: tuple[int, ...]) -> Tensor:
    return t.sum(events) if events else t


def _add(y: Tensor, x: Tensor, c: float | Tensor) -> Tensor:
    """y + c·x for a number or a 0-d tensor c, out of place."""
    return torch.addcmul(y, x, c) if isinstance(c, Tensor) else torch.add(y, x, alpha=c)


def _add_(y: Tensor, x: Tensor, c: float | Tensor) -> Tensor:
    return y.addcmul_(x, c) if isinstance(c, Tensor) else y.add_(x, alpha=c)


def _twice_kinetic(p2: Tensor, inv_mass: Tensor | None, events: tuple[int, ...]) -> Tensor:
    """|p|², or pᵀM⁻¹p for a diagonal inverse mass, per chain, from ``p2`` = p² (consumed)."""
    return _per_chain(p2 if inv_mass is None else p2.mul_(inv_mass), events)


def hmc_kernel(x: Tensor, e: Tensor, g: Tensor, energy: nn.Module, step_size: float | Tensor,
               n_leapfrog: int, *, mass: float, temperature: float, rng: torch.Generator,
               cond: Tensor | None = None, mask: Tensor | None = None, jitter: float = 0.0,
               inv_mass: Tensor | None = None,
               ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor, Tensor]:
    """One HMC transition from (x, E(x), ∇E(x)); returns the new (x, E, ∇E), the acceptance
    probability and the accepted mask per chain. ``step_size`` is a number or a tensor that
    broadcasts against x (0-d, or (batch, 1, …) per chain); with ``jitter`` each chain's is
    scaled by a draw from U(1 − jitter, 1 + jitter). ``inv_mass``, a diagonal inverse mass
    that broadcasts against x, replaces the scalar ``mass``."""
    p = normal_like(x, rng)
    if mask is not None:
        p.masked_fill_(mask, 0)  # observed coordinates get no momentum, so never move
    if inv_mass is not None:
        p.mul_(inv_mass.rsqrt())
    elif mass != 1:
        p.mul_(mass ** 0.5)
    events = tuple(range(1, x.dim()))  # sum over all but the batch dimension
    if jitter:  # per chain: a (batch, 1, …) factor that broadcasts over the event dimensions
        u = uniform_like(x.new_empty((x.shape[0],) + (1,) * len(events)), rng)
        step_size = u.mul_(2 * jitter).add_(1 - jitter).mul_(step_size)
    kinetic0 = _twice_kinetic(p.square(), inv_mass, events)
    # x += c_x·p;  p += c_p·∇E
    c_x, c_p = step_size / mass if inv_mass is None else inv_mass * step_size, -step_size / temperature
    c_half = c_p / 2
    _add_(p, g if mask is None else g.masked_fill(mask, 0), c_half)  # half step of p
    x_new = x
    for i in range(n_leapfrog):
        x_new = _add(x_new, p, c_x)
        e_new, g_new = energy_and_grad(energy, x_new, cond)
        _add_(p, g_new if mask is None else g_new.masked_fill(mask, 0), c_p if i < n_leapfrog - 1 else c_half)
    if mask is not None:
        x_new = torch.where(mask, x, x_new)  # bit-identical, even for −0.0
    # log ratio = H(start) − H(end) = (E(x) − E(x'))/T + (pᵀM⁻¹p − p'ᵀM⁻¹p')/2
    log_ratio = torch.sub(e, e_new)
    if temperature != 1:
        log_ratio.div_(temperature)
    kinetic0.sub_(_twice_kinetic(p.square_(), inv_mass, events))
    log_ratio.add_(kinetic0, alpha=0.5 / mass if inv_mass is None else 0.5)
    prob, accepted = metropolis(log_ratio, rng)
    return (select(accepted, x_new, x), select(accepted, e_new, e), select(accepted, g_new, g)), prob, accepted


def per_chain_step(step_size: Tensor, x: Tensor) -> Tensor:
    """A (batch,) step size as (batch, 1, …), to broadcast against x; a 0-d one unchanged."""
    return step_size.view(-1, *(1,) * (x.dim() - 1)) if step_size.dim() else step_size


class HMC(Sampler):
    """HMC kernel, with a warm-up (:mod:`ebm_hmc.adaptation`) wrapped around it when ``adapt_steps > 0``."""

    Config = HMCConfig

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> HMCState:
        e, g = energy_and_grad(energy, x, cond)
        warmup = warmup_init(self.config, x)
        return HMCState(x, e, g, warmup.step_size, warmup.adaptation, warmup.inv_mass)

    def compilable(self, state: HMCState) -> bool:
        return state.adaptation is None  # the warm-up's step counter is a Python int

    @off_graph
    def step(self, state: HMCState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[HMCState, HMCInfo]:
        c = self.config
        # a fixed ε stays a Python number (cheapest); an adapted one stays on the device
        eps = per_chain_step(state.step_size, state.x) if c.adapt_steps else c.step_size
        (x, e, g), prob, accepted = hmc_kernel(
            state.x, state.energy, state.grad, energy, eps, c.n_leapfrog, mass=c.mass,
            temperature=c.temperature, rng=rng, cond=cond, mask=mask, jitter=c.jitter, inv_mass=state.inv_mass)
        warmup = warmup_update(c, Warmup(state.step_size, state.inv_mass, state.adaptation), x, prob)
        return (HMCState(x, e, g, warmup.step_size, warmup.adaptation, warmup.inv_mass),
                HMCInfo(prob, accepted, state.step_size))
