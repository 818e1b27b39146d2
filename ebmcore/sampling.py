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
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x) if cond is None else energy(x, cond)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


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
    # fp32 chains even inside a bf16 loss, unless run.sampling_precision asks (ebmcore.devices)
    with sampling_mode(energy), torch.no_grad(), chain_autocast(x0.device):
        state = sampler.init(x0, energy, cond)
        for t in range(n_steps):
            if temperatures is not None and temperatures[t] != energy.temperature:
                energy.temperature = temperatures[t]
                state = sampler.init(state.x, energy, cond)
            state, info = sampler.step(state, energy, rng=rng, cond=cond, **kw)
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
