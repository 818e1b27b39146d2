"""Antithetic noise for denoising score matching. The score s(x) = −∇ₓE(x) kept
differentiable, and the DSM loss, are shared with other plugins: :mod:`ebmcore.kit.losses`."""

import torch
from torch import Tensor


def antithetic(x: Tensor, noise: Tensor, *others: Tensor | None) -> tuple:
    """Each example twice, with noise ε and −ε (and ``others``, per-example tensors or None,
    repeated alike). In the DSM loss the cross term ε·(x − μ)ᵀ/σ, whose variance grows as
    1/σ², then cancels exactly in every pair; each pair's mean is still unbiased."""
    twice = tuple(None if t is None else torch.cat([t, t]) for t in others)
    return (torch.cat([x, x]), torch.cat([noise, -noise]), *twice)
