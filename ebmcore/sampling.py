"""The loop shared by every sampler, and the helpers kernels use.

This is the hottest path of the library: no host syncs, no per-step Python beyond the
kernel call, gradients only with respect to x.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ebmcore.devices import chain_autocast


def energy_and_grad(energy: nn.Module, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """E(x) per example and ∇ₓ ΣE, both detached."""
    if torch.compiler.is_compiling():
        # torch.compile cannot trace autograd.grad; torch.func's transform traces, same numbers
        def total(y: Tensor) -> tuple[Tensor, Tensor]:
            e = energy(y) if cond is None else energy(y, cond)
            return e.sum(), e
        g, (_, e) = torch.func.grad_and_value(total, has_aux=True)(x.detach())
        return e.detach(), g
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x) if cond is None else energy(x, cond)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


def normal_like(x: Tensor, rng: Any) -> Tensor:
    """ξ ~ N(0, I) shaped like ``x``: the next normal draw of ``rng``. Kernels draw their
    randomness through this and :func:`uniform_like`, so that a compiled chain can draw it
    in advance, in the same order (:mod:`ebmcore.compiled`)."""
    if isinstance(rng, torch.Generator):
        # the same numbers as torch.randn(x.shape, generator=rng, ...), with less call overhead
        return torch.empty_like(x, memory_format=torch.contiguous_format).normal_(generator=rng)
    return rng.draw("normal", x)


def uniform_like(x: Tensor, rng: Any) -> Tensor:
    """u ~ U[0, 1) shaped like ``x``: the next uniform draw of ``rng`` (see :func:`normal_like`)."""
    if isinstance(rng, torch.Generator):
        return torch.empty_like(x, memory_format=torch.contiguous_format).uniform_(generator=rng)
    return rng.draw("uniform", x)


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
    """E(x)/T for a temperature T that the loop changes between steps (annealing)."""

    def __init__(self, energy: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.energy, self.temperature = energy, temperature

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        e = self.energy(x) if cond is None else self.energy(x, cond)
        return e / self.temperature


def run_chain(sampler: Any, x0: Tensor, energy: nn.Module, n_steps: int, *,
              rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None,
              trace: bool = False, temperatures: Sequence[float] | None = None,
              ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Drive ``sampler``'s kernel for ``n_steps`` from ``x0``; return detached samples.

    ``mask`` (bool, broadcastable to x) marks observed coordinates. It is passed to the
    kernel, which must leave them bit-identical and move only the free ones, so that an
    energy or gradient it carries stays valid and an accept/reject step targets the
    conditional distribution.

    ``trace=True`` also returns the chains' history, ``{"x": (n_steps, *x.shape), <each
    Info field>: (n_steps, ...), "grad_norm": (n_steps, batch)}`` (energies, acceptance,
    ‖∇E‖ of the gradient each step used or carries), for diagnostics such as
    :func:`ebmcore.diagnostics.effective_sample_size`. Off by default: it keeps every step.

    A sampler with ``compile = True`` runs its steps through :mod:`ebmcore.compiled`
    (several per call; one per call with ``trace``; eagerly with ``temperatures``).

    ``temperatures`` (one per step) anneals: step t samples exp(−E/T_t), on top of the
    kernel's own temperature. The kernel state is re-initialised where T changes, which
    costs a kernel that caches ∇E one gradient per change: prefer piecewise-constant
    schedules for MALA and HMC.
    """
    x0 = x0.detach()
    kw = {} if mask is None else {"mask": mask.expand_as(x0)}
    history: list[tuple[Tensor, Any]] = []
    if temperatures is not None:
        if len(temperatures) != n_steps or not all(t > 0 for t in temperatures):
            raise ValueError(f"temperatures: need {n_steps} positive values, got {list(temperatures)[:5]}…")
        energy = Tempered(energy, temperatures[0])
    # annealed chains run eagerly: a compiled step would be specialised on each temperature
    compiled = None
    if getattr(sampler, "compile", False) and temperatures is None:
        from ebmcore.compiled import compiled_steps  # imports this module

        compiled = compiled_steps(sampler)
    # fp32 chains even inside a bf16 loss, unless run.sampling_precision asks (ebmcore.devices)
    with sampling_mode(energy), torch.no_grad(), chain_autocast(x0.device):
        state = sampler.init(x0, energy, cond)
        t = 0
        while t < n_steps:
            if temperatures is not None and temperatures[t] != energy.temperature:
                energy.temperature = temperatures[t]
                state = sampler.init(state.x, energy, cond)
            if compiled is not None:  # several steps per call, one while tracing the history
                state, info, k = compiled.run(state, energy, 1 if trace else n_steps - t, rng=rng, cond=cond,
                                              mask=kw.get("mask"))
            else:
                state, info = sampler.step(state, energy, rng=rng, cond=cond, **kw)
                k = 1
            t += k
            if trace:
                grad = getattr(info, "grad", None)
                history.append((state.x, info, getattr(state, "grad", None) if grad is None else grad))
    if not trace:
        return state.x.detach()
    return state.x.detach(), _stack(history)


def _stack(history: list[tuple[Tensor, Any, Tensor | None]]) -> dict[str, Tensor]:
    """Positions, every tensor Info field, and the per-chain norm of ∇E where known."""
    if not history:
        return {}
    out = {"x": torch.stack([x for x, _, _ in history])}
    for name in history[0][1]._fields:
        values = [getattr(info, name) for _, info, _ in history]
        if isinstance(values[0], Tensor) and name != "grad":
            out[name] = torch.stack(values)
    if all(g is not None for _, _, g in history):
        out["grad_norm"] = torch.stack([g.flatten(1).norm(dim=1) for _, _, g in history])
    return out


def latent_langevin(potential: Callable[[Tensor], Tensor], z: Tensor, n_steps: int, delta: float, *,
                    rng: torch.Generator) -> Tensor:
    """``n_steps`` of Langevin on a latent ``potential`` U (one value per example) from ``z``,
    in the δ-form of latent-variable models (Han et al. 2017, Pang et al. 2020):

        z ← z − δ²/2 · ∇U(z) + δ · ξ,   ξ ~ N(0, I)

    (ULA with step s = δ²/2 and noise √(2s) = δ; the papers' "step size" is δ). Gradients
    are taken with respect to z only (no parameter collects any), so it serves posterior
    inference inside a training step and prior sampling alike; it works under
    ``torch.no_grad()`` too. Returns detached latents; n steps cost n gradients of U.
    """
    z = z.detach()
    with torch.enable_grad():
        for _ in range(n_steps):
            z.requires_grad_(True)
            (grad,) = torch.autograd.grad(potential(z).sum(), z)
            noise = torch.randn(z.shape, generator=rng, device=z.device, dtype=z.dtype)
            z = (z.detach() - delta * delta / 2 * grad + delta * noise).detach()
    return z
