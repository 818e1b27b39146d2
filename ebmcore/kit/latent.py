"""Langevin in a latent space, as latent-variable models write it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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
