"""What a kernel's step uses: E and ∇E, random draws from the chain's ``rng``, and the
Metropolis accept/reject. Kernels draw their randomness only through :func:`normal_like`
and :func:`uniform_like`, so that a compiled chain can draw it in advance, in the same
order (:mod:`ebmcore.compiled`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

EnergyFn = Callable[..., Tensor]


def energy_and_grad(energy: EnergyFn, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
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
    """ξ ~ N(0, I) shaped like ``x``: the next normal draw of ``rng``."""
    if isinstance(rng, torch.Generator):
        # the same numbers as torch.randn(x.shape, generator=rng, ...), with less call overhead
        return torch.empty_like(x, memory_format=torch.contiguous_format).normal_(generator=rng)
    return rng.draw("normal", x)


def uniform_like(x: Tensor, rng: Any) -> Tensor:
    """u ~ U[0, 1) shaped like ``x``: the next uniform draw of ``rng``."""
    if isinstance(rng, torch.Generator):
        return torch.empty_like(x, memory_format=torch.contiguous_format).uniform_(generator=rng)
    return rng.draw("uniform", x)


def metropolis(log_ratio: Tensor, rng: Any) -> tuple[Tensor, Tensor]:
    """Accept each chain's proposal with probability min(1, exp(log_ratio)); a NaN ratio
    gives probability 0 (rejected). Returns (probability, accepted) per chain; ``log_ratio``
    is consumed."""
    prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp_(max=0).exp_()
    return prob, uniform_like(prob, rng) < prob  # u ∈ [0, 1)


def select(accepted: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per chain, ``new`` where accepted and ``old`` elsewhere: ``torch.where``, not
    arithmetic, so a rejected proposal's NaN stays out of the state."""
    return torch.where(accepted.view(-1, *(1,) * (new.dim() - 1)), new, old)
