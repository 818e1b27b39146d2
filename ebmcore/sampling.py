"""The loop shared by every sampler: :func:`run_chain`.

This is the hottest path of the library: no host syncs, no per-step Python beyond the
kernel call, gradients only with respect to x. Chains run in fp32 even inside a bf16
loss (Langevin's small step x − s·∇E + σ·ξ is rounded away by bf16's 8-bit mantissa),
unless the run's ``sampling_precision`` asks for bf16 (:func:`sampling_precision`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmcore.compiled import compiled_steps

if TYPE_CHECKING:
    from ebmcore.interfaces import Sampler

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: the dtype chains run in (None: fp32, autocast off), set by the runner for a run
_CHAIN_DTYPE: ContextVar[torch.dtype | None] = ContextVar("ebm_chain_dtype", default=None)
#: what a chain that ends non-finite does: "warn", "raise" or "ignore" (:func:`nonfinite_chains`)
_NONFINITE: ContextVar[str] = ContextVar("ebm_nonfinite", default="warn")


@contextlib.contextmanager
def sampling_precision(precision: str) -> Iterator[None]:
    """Chains started inside run in ``precision`` ("fp32": autocast off, the default)."""
    token = _CHAIN_DTYPE.set(PRECISIONS[precision])
    try:
        yield
    finally:
        _CHAIN_DTYPE.reset(token)


@contextlib.contextmanager
def nonfinite_chains(action: str) -> Iterator[None]:
    """What chains started inside do when they end non-finite: ``"warn"`` (the default: a
    warning with the fraction of chains and the first bad step, found by replaying the chain),
    ``"raise"`` (``FloatingPointError``) or ``"ignore"`` (the runner, whose divergence guard
    reports it without a host sync)."""
    if action not in ("warn", "raise", "ignore"):
        raise ValueError(f"nonfinite_chains: 'warn', 'raise' or 'ignore', not {action!r}")
    token = _NONFINITE.set(action)
    try:
        yield
    finally:
        _NONFINITE.reset(token)


def _chain_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    dtype = _CHAIN_DTYPE.get()
    if dtype is None:
        if not torch.is_autocast_enabled(device.type):
            return contextlib.nullcontext()
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def sampling_mode(energy: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients while sampling; both restored afterwards."""
    params = [p for p in energy.parameters() if p.requires_grad]
    was_training = energy.training
    energy.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        energy.train(was_training)


class Tempered(nn.Module):
    """E(x)/T: T a number the loop changes between steps (annealing), or one per example."""

    def __init__(self, energy: nn.Module, temperature: float | Tensor = 1.0):
        super().__init__()
        self.energy, self.temperature = energy, temperature

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        e = self.energy(x) if cond is None else self.energy(x, cond)
        return e / self.temperature


class FunctionEnergy(nn.Module):
    """A plain function ``x -> E(x)`` (or ``(x, cond) -> E``) as an energy module."""

    def __init__(self, fn: Callable[..., Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.fn(x) if cond is None else self.fn(x, cond)


def run_chain(sampler: Sampler, x0: Tensor, energy: nn.Module | Callable[..., Tensor], n_steps: int, *,
              rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None,
              trace: bool = False, temperatures: Sequence[float] | None = None,
              ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Drive ``sampler``'s kernel for ``n_steps`` from ``x0``; return detached samples.

    ``energy`` is a module or any function of x (and cond) giving one energy per example.
    ``mask`` (bool, broadcastable to x) marks observed coordinates. It is passed to the
    kernel, which must leave them bit-identical and move only the free ones, so that an
    energy or gradient it carries stays valid and an accept/reject step targets the
    conditional distribution.

    ``trace=True`` also returns the chains' history: ``{"x": (n_steps, *x.shape), <each
    tensor field of Info but grad>: (n_steps, ...), "grad_norm": (n_steps, batch)}``, the
    last being ‖∇E‖ of the gradient each step used (Info's ``grad``) or carries (State's
    ``grad``) where the kernel has one. Off by default: it keeps every step.

    A sampler with ``compile = True`` runs its steps through :mod:`ebmcore.compiled`
    (several per call; one per call with ``trace``; eagerly with ``temperatures``).

    ``temperatures`` (one per step) anneals: step t samples exp(−E/T_t), on top of the
    kernel's own temperature. The kernel state is re-initialised where T changes, which
    costs a kernel that caches ∇E one gradient per change: prefer piecewise-constant
    schedules for MALA and HMC.

    Chains that end non-finite are reported as :func:`nonfinite_chains` says (by default a
    warning naming the fraction of chains and the first bad step).
    """
    x0 = x0.detach()
    if not isinstance(energy, nn.Module):
        energy = FunctionEnergy(energy)
    if temperatures is not None and (len(temperatures) != n_steps or not all(t > 0 for t in temperatures)):
        raise ValueError(f"temperatures: need {n_steps} positive values, got {list(temperatures)[:5]}…")
    check = _NONFINITE.get()
    start = None if check == "ignore" else rng.get_state()
    args = (sampler, x0, energy, n_steps, cond, None if mask is None else mask.expand_as(x0), temperatures)
    x, history, _ = _drive(*args, rng=rng, trace=trace)
    if start is not None and not bool(torch.isfinite(x).all()):
        replay = torch.Generator(device=rng.device)
        replay.set_state(start)  # the same chain again, eagerly, watching every step
        first = _drive(*args, rng=replay, trace=False, watch=True)[2]
        bad = (~torch.isfinite(x.flatten(1))).any(1).sum().item()
        what = (f"{sampler!r}: {bad} of {len(x)} chains ({100 * bad / len(x):.0f} %) are non-finite after "
                f"{n_steps} steps; the first went at step {first} (a smaller step size may help)")
        if check == "raise":
            raise FloatingPointError(what)
        warnings.warn(what, RuntimeWarning, stacklevel=3)
    return (x, _stack(history)) if trace else x


def _drive(sampler, x0, energy, n_steps, cond, mask, temperatures, *, rng, trace, watch=False):
    """The loop: (samples, history, the first step at which a chain was non-finite if ``watch``)."""
    kw = {} if mask is None else {"mask": mask}
    history: list[tuple[Tensor, Any, Any]] = []
    if temperatures is not None:
        energy = Tempered(energy, temperatures[0])
    # annealed and watched chains run eagerly: a compiled step would be specialised on each temperature
    compiled = compiled_steps(sampler) if sampler.compile and temperatures is None and not watch else None
    first = None
    with sampling_mode(energy), torch.no_grad(), _chain_autocast(x0.device):
        state = sampler.init(x0, energy, rng=rng, cond=cond)
        t = 0
        while t < n_steps:
            if temperatures is not None and temperatures[t] != energy.temperature:
                energy.temperature = temperatures[t]
                state = sampler.init(state.x, energy, rng=rng, cond=cond)
            if compiled is not None:  # several steps per call, one while tracing the history
                state, info, k = compiled.run(state, energy, 1 if trace else n_steps - t, rng=rng, cond=cond,
                                              mask=kw.get("mask"))
            else:
                state, info = sampler.step(state, energy, rng=rng, cond=cond, **kw)
                k = 1
            t += k
            if trace:
                history.append((state.x, _fields(info), _fields(state)))
            if watch and first is None and not bool(torch.isfinite(state.x).all()):
                first = t
    return state.x.detach(), history, first


def _fields(t: tuple) -> dict[str, Any]:
    """A kernel's State or Info as a dict (``()`` is an Info with no fields)."""
    return {} if type(t) is tuple else t._asdict()


def _stack(history: list[tuple[Tensor, dict[str, Any], dict[str, Any]]]) -> dict[str, Tensor]:
    """Positions, every tensor Info field, and the per-chain norm of ∇E where known."""
    if not history:
        return {}
    out = {"x": torch.stack([x for x, _, _ in history])}
    for name, value in history[0][1].items():
        if isinstance(value, Tensor) and name != "grad":
            out[name] = torch.stack([info[name] for _, info, _ in history])
    grads = [state.get("grad") if info.get("grad") is None else info["grad"] for _, info, state in history]
    if all(isinstance(g, Tensor) for g in grads):
        out["grad_norm"] = torch.stack([g.flatten(1).norm(dim=1) for g in grads])
    return out
