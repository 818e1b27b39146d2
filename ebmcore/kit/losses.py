"""Losses more than one plugin trains with: the maximum-likelihood loss every MCMC-trained
energy shares, and denoising score matching (ebm-score's objectives, ebm-shapes' completion
field). Score matching fits s = −∇ₓE to the data's score, so its loss is a function of ∇ₓE
and its parameter gradient needs the graph of that gradient (double back-propagation):
:func:`score` keeps it, where :func:`ebmcore.energy_and_grad` (a sampler's) detaches."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def maximum_likelihood_loss(energy: nn.Module, x_pos: Tensor, x_neg: Tensor, cond: Tensor | None = None,
                            alpha: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """E(data) − E(samples), averaged, whose gradient is the log-likelihood's (the samples
    standing in for the model), plus the energy-magnitude regulariser α·(E⁺² + E⁻²) of
    IGEBM; one forward pass over both. Returns (loss, metrics ``loss/cd``,
    ``energy/data``, ``energy/sample``)."""
    n = len(x_pos)
    both = torch.cat([x_pos, x_neg])
    e = energy(both) if cond is None else energy(both, torch.cat([cond, cond]))
    e_pos, e_neg = e[:n], e[n:]
    cd = e_pos.mean() - e_neg.mean()
    loss = cd + alpha * (e_pos.pow(2) + e_neg.pow(2)).mean() if alpha else cd
    return loss, {"loss/cd": cd.detach(), "energy/data": e_pos.mean().detach(),
                  "energy/sample": e_neg.mean().detach()}


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
