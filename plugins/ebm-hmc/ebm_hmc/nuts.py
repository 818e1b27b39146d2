"""The No-U-Turn sampler: HMC that picks each trajectory's length itself (Hoffman & Gelman
2014), with multinomial sampling of the trajectory's points and the generalised U-turn
criterion, as Stan and BlackJAX (Betancourt 2017, appendix A).

From (x, p), p ~ N(0, M), each chain doubles a leapfrog trajectory in a random direction
(1, 2, 4, … steps) until it makes a U-turn: with p♯ = M⁻¹p and ρ the sum of the momenta
over a span of the trajectory, the span turns when p♯·ρ ≤ 0 at either end. It is checked
on every subtree a doubling merges, and, as Stan does, across the two halves of each
merge (each half with the neighbouring point of the other). A chain also stops at a
divergence (the energy error H − H₀ above 1000, or NaN) and after ``max_depth`` doublings.
The next point is drawn with weight exp(−H) among the trajectory's points: uniformly
within a subtree, biased towards the new subtree when one is merged into the trajectory.
An invalid subtree (one that turned inside or diverged) is dropped whole.

The chains of a batch advance in lockstep, one leapfrog step at a time; a chain that has
stopped is frozen, so it spends no gradient (Info's ``n_grads``) but waits for the batch.
The loop's shape depends on the data: a step waits for the device once per doubling (are
all chains done?) and cannot be compiled (``compilable`` is False).

The warm-up (:mod:`ebm_hmc.adaptation`) is HMC's: dual averaging of ε, or Stan's windows,
on the mean acceptance statistic of the trajectory's points.
"""

from __future__ import annotations

import math
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
from ebm_hmc.samplers import per_chain_step
from ebmcore import Sampler, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kernel import normal_like, uniform_like
from ebmcore.kit.offgraph import off_graph

#: Stan's and BlackJAX's divergence threshold on the energy error H − H₀
MAX_ENERGY_ERROR = 1000.0


@attrs.frozen
class NUTSConfig:
    """The No-U-Turn sampler (multinomial, Stan's U-turn criterion), with optional step-size or window adaptation."""

    step_size: float = cfg.positive("leapfrog step ε (the initial one when adapting)", default=0.1)
    max_depth: int = attrs.field(
        default=10, validator=attrs.validators.ge(1),
        metadata={"doc": "most trajectory doublings per step: at most 2^max_depth − 1 leapfrog steps (gradients)"})
    n_steps: int = cfg.positive("chain length, in NUTS steps (warm-up included)", default=60)
    mass: float = cfg.positive("mass m: momentum p ~ N(0, m·I) (until window adaptation estimates one)",
                               default=1.0)
    temperature: float = cfg.positive("temperature T: samples exp(−E/T)", default=1.0)
    adapt_steps: int = adapt_steps_field()
    target_accept: float = attrs.field(
        default=0.8, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
        metadata={"doc": "mean acceptance statistic the adaptation aims at (Stan's 0.8)"})
    adaptation: Literal["step_size", "window"] = adaptation_field("window")
    adaptation_scope: Literal["pooled", "per_chain"] = adaptation_scope_field()
    compile: bool = cfg.doc("accepted for the sampler contract; NUTS always runs eagerly (its tree's length "
                            "depends on the data)", default=False)


class NUTSState(NamedTuple):
    """As :class:`ebm_hmc.HMCState`: position, energy and ∇E; ε for the next step (0-d, or
    (batch,) when adapted per chain); the warm-up's state or None; the diagonal inverse
    mass window adaptation estimated, or None."""

    x: Tensor
    energy: Tensor
    grad: Tensor
    step_size: Tensor
    adaptation: DualAveragingState | WindowAdaptationState | None = None
    inv_mass: Tensor | None = None


class NUTSInfo(NamedTuple):
    """Per chain: the mean over the trajectory's new points of min(1, exp(H₀ − H)) (what
    dual averaging uses); the leapfrog steps, one gradient each, the chain took; the
    doublings kept (tree depth); whether it stopped at a divergence."""

    acceptance_prob: Tensor
    n_grads: Tensor
    depth: Tensor
    diverging: Tensor


class _Tree(NamedTuple):
    """Consecutive points of a trajectory: momenta at the first and the last made, the sum
    ρ of all their momenta, log Σ exp(H₀ − H) over them and the point drawn from them
    (x, E, ∇E)."""

    p_first: Tensor
    p_last: Tensor
    rho: Tensor
    log_weight: Tensor
    x: Tensor
    e: Tensor
    g: Tensor


class _Leapfrog:
    """Leapfrog steps of size ±ε per chain for H = E/T + pᵀM⁻¹p/2, and the sums over a
    chain's coordinates that the tree needs."""

    def __init__(self, energy: nn.Module, cond: Tensor | None, mask: Tensor | None, inv_mass: float | Tensor,
                 temperature: float, x: Tensor):
        self.energy, self.cond, self.mask = energy, cond, mask
        self.inv_mass, self.temperature = inv_mass, temperature
        self.unit = not isinstance(inv_mass, Tensor) and inv_mass == 1
        self.col = (x.shape[0],) + (1,) * (x.dim() - 1)  # per-chain values broadcast over the coordinates
        # a sum over a chain's coordinates as a product with ones: on the CPU, for few
        # coordinates, several times faster than .sum over them
        self.ones, self.event_dims = x.new_ones(x[0].numel()), x.dim() - 1

    def dot(self, a: Tensor, b: Tensor) -> Tensor:
        """Σ a·b over each chain's coordinates (the last x.dim() − 1 dimensions)."""
        ab = a * b
        return ab.flatten(-self.event_dims) @ self.ones if self.event_dims else ab

    def sharp(self, p: Tensor) -> Tensor:
        """p♯ = M⁻¹p."""
        return p if self.unit else p * self.inv_mass

    def hamiltonian(self, e: Tensor, p: Tensor) -> Tensor:
        kinetic = self.dot(p, self.sharp(p)).mul_(0.5)
        return kinetic.add_(e if self.temperature == 1 else e / self.temperature)

    def force(self, g: Tensor) -> Tensor:
        """∇E/T, zero on observed coordinates (their momentum stays 0)."""
        g = g if self.mask is None else g.masked_fill(self.mask, 0)
        return g if self.temperature == 1 else g / self.temperature

    def __call__(self, x: Tensor, p: Tensor, g: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step of ``eps`` (batch, 1, …) per chain: ±ε, or 0 for a frozen chain."""
        half = eps / 2
        p = p - half * self.force(g)
        x = x + eps * self.sharp(p)
        e, g = energy_and_grad(self.energy, x, self.cond)
        return x, p - half * self.force(g), e, g


def _no_u_turn(lf: _Leapfrog, a: _Tree, b: _Tree, rho: Tensor) -> Tensor:
    """Stan's criterion for two adjacent spans a, b (b made after a) with ρ = ρ_a + ρ_b:
    p♯·ρ > 0 at both ends of the whole, of a with b's first point and of b with a's last
    point (six sums, made as one: each is an operation of its own on a small batch)."""
    ends = torch.stack((a.p_first, b.p_last, a.p_first, b.p_first, a.p_last, b.p_last))
    spans = torch.stack((rho, a.rho + b.p_first, b.rho + a.p_last)).repeat_interleave(2, 0)
    return (lf.dot(ends, lf.sharp(spans)) > 0).all(0)


def _merge(lf: _Leapfrog, a: _Tree, b: _Tree, u: Tensor, *, biased: bool) -> tuple[_Tree, Tensor]:
    """a and b as one tree, and whether it has not turned. Its point is b's with
    probability w_b/(w_a + w_b) (uniform over the points), or, ``biased``, min(1, w_b/w_a)."""
    log_weight = torch.logaddexp(a.log_weight, b.log_weight)
    take_b = u < (b.log_weight - (a.log_weight if biased else log_weight)).exp()
    pick = take_b.view(lf.col)
    rho = a.rho + b.rho
    tree = _Tree(a.p_first, b.p_last, rho, log_weight, torch.where(pick, b.x, a.x),
                 torch.where(take_b, b.e, a.e), torch.where(pick, b.g, a.g))
    return tree, _no_u_turn(lf, a, b, rho)


def nuts_kernel(x: Tensor, e: Tensor, g: Tensor, energy: nn.Module, step_size: Tensor, *, max_depth: int,
                inv_mass: float | Tensor, temperature: float, rng: torch.Generator, cond: Tensor | None = None,
                mask: Tensor | None = None) -> tuple[tuple[Tensor, Tensor, Tensor], NUTSInfo]:
    """One NUTS transition of every chain from (x, E(x), ∇E(x)); returns the new (x, E, ∇E)
    and :class:`NUTSInfo`. ``step_size`` and ``inv_mass`` (M⁻¹, diagonal) broadcast against x."""
    batch = x.shape[0]
    p = normal_like(x, rng)
    if mask is not None:
        p.masked_fill_(mask, 0)  # observed coordinates get no momentum, so never move
    if isinstance(inv_mass, Tensor):
        p.mul_(inv_mass.rsqrt())  # p ~ N(0, M)
    elif inv_mass != 1:
        p.mul_(inv_mass ** -0.5)
    lf = _Leapfrog(energy, cond, mask, inv_mass, temperature, x)
    col = lf.col
    h0 = lf.hamiltonian(e, p)
    # the trajectory's ends forward and backward in time (position, momentum, ∇E), and what
    # the tree needs of all of it (its momenta's sum, weight and drawn point; the momenta at
    # its ends are fwd's and bck's)
    fwd = bck = (x, p, g)
    traj = _Tree(p, p, p, torch.zeros_like(h0), x, e, g)
    done = torch.zeros(batch, dtype=torch.bool, device=x.device)
    diverging = torch.zeros_like(done)
    n_grads = torch.zeros(batch, dtype=torch.long, device=x.device)
    depth = torch.zeros_like(n_grads)
    sum_accept = torch.zeros_like(h0)
    for j in range(max_depth):
        forward = uniform_like(h0, rng) < 0.5
        ahead = forward.view(col)
        z = tuple(torch.where(ahead, f, b) for f, b in zip(fwd, bck))
        eps = torch.where(ahead, step_size, -step_size).to(x.dtype)
        # the subtree of 2^j steps from that end, merged as Stan's recursion merges it: each
        # pair of equal subtrees on the stack as soon as the second is complete
        valid, stack = ~done, []
        for n in range(2 ** j):
            # a chain that has stopped steps by 0: it stays where it is
            zx, zp, ze, zg = lf(*z, eps * valid.view(col))
            z = (zx, zp, zg)
            log_w = h0 - lf.hamiltonian(ze, zp).nan_to_num_(nan=math.inf)  # H₀ − H: −inf where E is NaN
            n_grads += valid
            sum_accept += torch.where(valid, log_w.clamp(max=0).exp_(), 0)
            diverged = valid & (log_w < -MAX_ENERGY_ERROR)
            diverging |= diverged
            valid &= ~diverged
            tree, size = _Tree(zp, zp, zp, log_w, zx, ze, zg), 1
            while (n + 1) % (2 * size) == 0:
                tree, ok = _merge(lf, stack.pop(), tree, uniform_like(h0, rng), biased=False)
                valid &= ok
                size *= 2
            stack.append(tree)
        (sub,) = stack
        # the trajectory before it, ordered so that its end next to the subtree comes last
        old = traj._replace(p_first=torch.where(ahead, bck[1], fwd[1]), p_last=torch.where(ahead, fwd[1], bck[1]))
        merged, ok = _merge(lf, old, sub, uniform_like(h0, rng), biased=True)
        keep = valid.view(col)
        traj = traj._replace(rho=torch.where(keep, merged.rho, traj.rho),
                             log_weight=torch.where(valid, merged.log_weight, traj.log_weight),
                             x=torch.where(keep, merged.x, traj.x), e=torch.where(valid, merged.e, traj.e),
                             g=torch.where(keep, merged.g, traj.g))
        fwd = tuple(torch.where(keep & ahead, zi, f) for zi, f in zip(z, fwd))
        bck = tuple(torch.where(keep & ~ahead, zi, b) for zi, b in zip(z, bck))
        depth += valid
        done |= ~(valid & ok)
        if j + 1 < max_depth and bool(done.all()):  # the step's one wait for the device per doubling
            break
    x_new = traj.x if mask is None else torch.where(mask, x, traj.x)  # bit-identical, even for −0.0
    info = NUTSInfo(sum_accept / n_grads, n_grads, depth, diverging)
    return (x_new, traj.e, traj.g), info


class NUTS(Sampler):
    """NUTS kernel, with a warm-up (:mod:`ebm_hmc.adaptation`) wrapped around it when ``adapt_steps > 0``."""

    Config = NUTSConfig

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> NUTSState:
        e, g = energy_and_grad(energy, x, cond)
        warmup = warmup_init(self.config, x)
        return NUTSState(x, e, g, warmup.step_size, warmup.adaptation, warmup.inv_mass)

    def compilable(self, state: NUTSState) -> bool:
        return False  # the tree's depth, and so the graph, depends on the data

    @off_graph
    def step(self, state: NUTSState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[NUTSState, NUTSInfo]:
        c = self.config
        inv_mass = 1 / c.mass if state.inv_mass is None else state.inv_mass
        (x, e, g), info = nuts_kernel(
            state.x, state.energy, state.grad, energy, per_chain_step(state.step_size, state.x),
            max_depth=c.max_depth, inv_mass=inv_mass, temperature=c.temperature, rng=rng, cond=cond, mask=mask)
        warmup = warmup_update(c, Warmup(state.step_size, state.inv_mass, state.adaptation), x, info.acceptance_prob)
        return NUTSState(x, e, g, warmup.step_size, warmup.adaptation, warmup.inv_mass), info
