"""The score of an energy, s(x) = −∇ₓE(x), kept differentiable in the energy's parameters.

Score matching fits s to the data's score, so its loss is a function of ∇ₓE and its
parameter gradient needs the graph of that gradient (double back-propagation).
:func:`ebmcore.energy_and_grad` detaches its result, as a sampler wants; this is the
training counterpart.
"""

import torch
from torch import Tensor, nn


def score(energy: nn.Module, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(s(x), E(x)) per example, with ``create_graph``. ``x`` must require grad (a loss that
    differentiates s again w.r.t. x, as sliced score matching, uses that same ``x``)."""
    with torch.enable_grad():
        e = energy(x) if cond is None else energy(x, cond)
        (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
    return -g, e


def denoising_loss(energy: nn.Module, x: Tensor, sigma: Tensor, noise: Tensor,
                   cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Denoising score matching (Vincent 2011) of x̃ = x + σ·ε, weighted by σ²:
    σ²·½‖s(x̃) + (x̃ − x)/σ²‖² = ½‖σ·s(x̃) + ε‖² per example. ``sigma`` broadcasts against
    x (one per example, or a number). Returns (the per-example losses, E(x̃))."""
    x_tilde = (x + sigma * noise).detach().requires_grad_(True)
    s, e = score(energy, x_tilde, cond)
    return 0.5 * (sigma * s + noise).flatten(1).pow(2).sum(1), e


def antithetic(x: Tensor, noise: Tensor, *others: Tensor | None) -> tuple:
    """Each example twice, with noise ε and −ε (and ``others``, per-example tensors or None,
    repeated alike). In the DSM loss the cross term ε·(x − μ)ᵀ/σ, whose variance grows as
    1/σ², then cancels exactly in every pair; each pair's mean is still unbiased."""
    twice = tuple(None if t is None else torch.cat([t, t]) for t in others)
    return (torch.cat([x, x]), torch.cat([noise, -noise]), *twice)
