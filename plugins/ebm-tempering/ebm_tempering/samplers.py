"""Parallel tempering (replica exchange; Swendsen & Wang 1986, Geyer 1991) around any
registered sampler, the kernel.

Each chain has a replica at every temperature of a ladder 1 = T₁ < T₂ < … < T_K. All K·B
replicas of B chains run as one batch, ladder-major (rows k·B … (k+1)·B − 1 are at T_{k+1}),
and the kernel steps them on the model at each row's temperature, its tempered family
(:meth:`ebmcore.Energy.tempered`: E(x)/T_row unless the model says otherwise; an RBM scales
its joint so that Gibbs samples it): one energy call serves every temperature, and the
kernel's own temperature stays 1. Hot replicas cross barriers that the T = 1 chains cannot;
exchanges carry what they find down the ladder.

One step of the sampler is ``swap_every`` kernel steps, then a swap round: in every chain,
neighbouring temperatures (T_i, T_j) propose to exchange positions, accepted with probability
min(1, exp((1/T_i − 1/T_j)(E_i − E_j))) on the untempered energies (for another tempered
family, E_i(x_i) + E_j(x_j) − E_i(x_j) − E_j(x_i), from three evaluations; NaN: rejected). Pairs
(1, 2), (3, 4), … are proposed in even rounds, (2, 3), (4, 5), … in odd ones (the
deterministic even-odd scheme), so the proposals of a round are disjoint.

An exchange moves positions between rows, but what the kernel carries for a row (E and ∇E
at its old position and temperature, for MALA and HMC) stays behind. After every swap round
the kernel's state is therefore re-initialised at the new positions. A step costs
``swap_every`` kernel steps on K·B replicas, one energy evaluation for the swap decisions
and the kernel's ``init`` (one gradient for a kernel that carries ∇E, none for ULA). A
kernel's warm-up adaptation (HMC's ``adapt_steps``) restarts at every ``init``: give the
kernel a fixed step size. Annealing by ``run_chain``'s ``temperatures`` re-initialises the
sampler at each change, restarting the hot replicas from the T = 1 chains. The steps trace
(the round counter is a tensor), so ``compile = true`` compiles them, kernel and swaps
together, wherever the kernel compiles.

Persistent tempering (Desjardins et al. 2010): with ``return_all`` the sampler takes and
returns every replica (``replicas`` = K rows per target chain, the T = 1 chains first), so
an objective that honours :attr:`ebmcore.Sampler.replicas` (``mle``) can keep the whole
ladder in a replay buffer of K·B chains drawn without replacement, in order.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Energy, RecipeError, Sampler
from ebmcore import config as cfg
from ebmcore.errors import PluginError
from ebmcore.kernel import metropolis
from ebmcore.kit.offgraph import off_graph
from ebmcore.sampling import Tempered

#: kernel settings that parallel tempering owns: the kernel never runs a chain of its own
#: (so has no length or compile flag of its own), and the ladder sets every temperature
_OWN_KEYS = {"n_steps": "set parallel_tempering's n_steps", "compile": "set parallel_tempering's compile",
             "temperature": "the ladder sets each replica's temperature"}


def _kernel_keys(_inst, _attr, value: dict) -> None:
    taken = [f"{k} ({_OWN_KEYS[k]})" for k in sorted(set(value) & set(_OWN_KEYS))]
    if taken:
        raise ValueError(f"must not set {', '.join(taken)}")


def _explicit_ladder(inst, _attr, value) -> None:
    if value is None:
        return
    if len(value) < 2 or value[0] != 1 or any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"must start at 1 and increase strictly, with at least two temperatures, got {list(value)}")
    fields = attrs.fields(type(inst))
    if (inst.n_temperatures, inst.max_temperature) != (fields.n_temperatures.default, fields.max_temperature.default):
        raise ValueError("replaces n_temperatures and max_temperature: give the ladder one way, not both")


@attrs.frozen
class ParallelTemperingConfig:
    """Parallel tempering (replica exchange): a registered sampler at a ladder of temperatures."""

    n_steps: int = cfg.positive("chain length in steps; a step is swap_every kernel steps on every replica, "
                                "then one swap round", default=60)
    kernel: str = cfg.doc("registered sampler run at every temperature (built through the run's registry)",
                          default="mala")
    kernel_options: dict[str, Any] = attrs.field(
        factory=dict, validator=_kernel_keys,
        metadata={"doc": "the kernel's settings, e.g. {step_size = 0.1} (keys of its own section, "
                         "validated by it; not n_steps, compile or temperature)"})
    n_temperatures: int = attrs.field(
        default=8, validator=attrs.validators.ge(2),
        metadata={"doc": "temperatures K of the geometric ladder 1 … max_temperature (replicas per chain)"})
    max_temperature: float = attrs.field(
        default=10.0, validator=attrs.validators.gt(1),
        metadata={"doc": "hottest temperature of the geometric ladder"})
    temperatures: tuple[float, ...] | None = attrs.field(
        default=None, validator=_explicit_ladder,
        metadata={"doc": "an explicit ladder instead (first 1, increasing); replaces n_temperatures and "
                         "max_temperature"})
    swap_every: int = cfg.positive("kernel steps between swap rounds", default=1)
    return_all: bool = cfg.doc(
        "false: the starts are the T = 1 chains, hotter replicas start as copies, only T = 1 chains are "
        "returned; true: the starts are split over the temperatures (batch divisible by K), all are "
        "returned in ladder order", default=False)
    compile: bool = cfg.compile_flag()

    @property
    def ladder(self) -> tuple[float, ...]:
        """The temperatures, 1 first."""
        if self.temperatures is not None:
            return tuple(self.temperatures)
        k = self.n_temperatures
        return tuple(self.max_temperature ** (i / (k - 1)) for i in range(k))


class ParallelTemperingState(NamedTuple):
    """``x``: the T = 1 chains (with ``return_all``, every replica in ladder order); the
    kernel's state over all K·B replicas; 1/T of each replica (K·B,); the swap rounds done
    (0-d: its parity says which pairs the next round proposes)."""

    x: Tensor
    replicas: Any
    beta: Tensor
    rounds: Tensor


class ParallelTemperingInfo(NamedTuple):
    """``swap_prob`` (B, K − 1): per chain, the acceptance probability of exchanging
    temperatures k and k + 1 (for every pair, proposed this round or not: its mean over steps
    and chains is the pair's swap rate); ``swapped`` (B, K − 1): whether they were exchanged;
    ``kernel``: the kernel's Info of its last step, for the returned chains."""

    swap_prob: Tensor
    swapped: Tensor
    kernel: Any


def _at_temperatures(energy: nn.Module, beta: Tensor) -> nn.Module:
    """The energy of each replica at its own temperature 1/β: the model's tempered family
    (:meth:`ebmcore.Energy.tempered`), E(x)/T for an energy that is not an ``Energy``."""
    return energy.tempered(1 / beta) if isinstance(energy, Energy) else Tempered(energy, 1 / beta)


def _swap_log_ratio(energy: nn.Module, tempered: nn.Module, x: Tensor, beta: Tensor, k: int,
                    cond: Tensor | None) -> Tensor:
    """log of the exchange ratio of temperatures i and i + 1, (k − 1, b): for E/T from one
    untempered evaluation, (βᵢ − βᵢ₊₁)(Eᵢ − Eᵢ₊₁); for another family (an RBM's scaled joint)
    from each replica's tempered energy at its own and at its neighbours' positions,
    Eᵢ(xᵢ) + Eᵢ₊₁(xᵢ₊₁) − Eᵢ(xᵢ₊₁) − Eᵢ₊₁(xᵢ)."""
    def energies(y: Tensor, module: nn.Module) -> Tensor:
        return (module(y) if cond is None else module(y, cond)).view(k, -1)

    if isinstance(tempered, Tempered):
        e = energies(x, energy)
        return (beta[:-1] - beta[1:])[:, None] * (e[:-1] - e[1:])
    xs = x.view(k, -1, *x.shape[1:])
    own = energies(x, tempered)
    from_above = energies(torch.cat([xs[1:], xs[-1:]]).flatten(0, 1), tempered)  # row i holds x of i + 1
    from_below = energies(torch.cat([xs[:1], xs[:-1]]).flatten(0, 1), tempered)  # row i holds x of i − 1
    return own[:-1] + own[1:] - from_above[:-1] - from_below[1:]


def _kernel(c: ParallelTemperingConfig, ctx) -> Sampler:
    """The kernel, built through the context's registry from ``kernel_options``."""
    try:
        component = ctx.registry.get("sampler", c.kernel)
    except PluginError as exc:  # named by its recipe key, as a structuring error is
        raise RecipeError([("$.sampler.kernel", str(exc))]) from exc
    return ctx.make("sampler", c.kernel, cfg.structured(c.kernel_options, component.config, "$.sampler.kernel_options"))


def _rows(info: Any, n: int) -> Any:
    """The kernel's Info for the first ``n`` replicas: per-chain fields cut, 0-d ones kept."""
    if type(info) is tuple:  # an Info with no fields
        return info
    return type(info)(*(v[:n] if isinstance(v, Tensor) and v.dim() else v for v in info))


class ParallelTempering(Sampler):
    """Replica exchange around ``kernel``: ``ParallelTempering(MALA(step_size=0.1), n_temperatures=8)``.
    In a recipe ``kernel`` and ``kernel_options`` make the kernel."""

    Config = ParallelTemperingConfig

    def __init__(self, kernel: Sampler, config: ParallelTemperingConfig | None = None, /, **settings):
        super().__init__(config, **settings)
        self.kernel = kernel
        #: the temperatures, 1 first
        self.ladder = self.config.ladder

    @classmethod
    def from_config(cls, config: ParallelTemperingConfig, ctx) -> ParallelTempering:
        return cls(_kernel(config, ctx), config)

    @property
    def clamp(self) -> tuple[float, float] | None:
        return self.kernel.clamp

    @property
    def replicas(self) -> int:
        return len(self.ladder) if self.config.return_all else 1

    def compilable(self, state: ParallelTemperingState) -> bool:
        return self.kernel.compilable(state.replicas)

    def __repr__(self) -> str:
        c = self.config
        return (f"ParallelTempering({self.kernel!r}, ladder={[round(t, 4) for t in self.ladder]}, "
                f"swap_every={c.swap_every}, return_all={c.return_all}, compile={c.compile})")

    def _per_replica(self, t: Tensor | None) -> Tensor | None:
        """``cond`` or the mask, given for the returned chains, for every replica."""
        if t is None or self.config.return_all:
            return t
        return t.repeat(len(self.ladder), *(1,) * (t.dim() - 1))

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None) -> ParallelTemperingState:
        k = len(self.ladder)
        if self.config.return_all and len(x) % k:
            raise ValueError(f"parallel_tempering with return_all: the batch ({len(x)}) must be divisible by "
                             f"the {k} temperatures (chains are split over them)")
        replicas = self._per_replica(x)
        beta = torch.tensor([1 / t for t in self.ladder], dtype=x.dtype, device=x.device)
        beta = beta.repeat_interleave(len(replicas) // k)
        state = self.kernel.init(replicas, _at_temperatures(energy, beta), rng=rng, cond=self._per_replica(cond))
        return ParallelTemperingState(x, state, beta, torch.zeros((), dtype=torch.long, device=x.device))

    @off_graph
    def step(self, state: ParallelTemperingState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None,
             ) -> tuple[ParallelTemperingState, ParallelTemperingInfo]:
        cond = self._per_replica(cond)
        if mask is not None:
            mask = self._per_replica(mask.expand_as(state.x))
        tempered = _at_temperatures(energy, state.beta)
        replicas = state.replicas
        for _ in range(self.config.swap_every):
            replicas, info = self.kernel.step(replicas, tempered, rng=rng, cond=cond, mask=mask)
        x = replicas.x
        k = len(self.ladder)
        b = len(x) // k
        beta = state.beta.view(k, b)[:, 0]
        prob, accepted = metropolis(_swap_log_ratio(energy, tempered, x, beta, k, cond), rng)  # (k − 1, b)
        pairs = torch.arange(k - 1, device=x.device)
        swapped = accepted & (pairs % 2 == state.rounds % 2)[:, None]
        # the slot each replica comes from: k + 1 where pair (k, k + 1) swapped, k − 1 where (k − 1, k) did
        s = swapped.long()
        zero = torch.zeros_like(s[:1])
        src = torch.arange(k, device=x.device)[:, None] + torch.cat([s, zero]) - torch.cat([zero, s])
        x = x[(src * b + torch.arange(b, device=x.device)).view(-1)]
        replicas = self.kernel.init(x, tempered, rng=rng, cond=cond)  # the carried E, ∇E are stale
        n = len(x) if self.config.return_all else b
        return (ParallelTemperingState(x[:n], replicas, state.beta, state.rounds + 1),
                ParallelTemperingInfo(prob.T, swapped.T, _rows(info, n)))
