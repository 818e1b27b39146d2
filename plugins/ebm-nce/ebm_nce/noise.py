"""The noise distribution of NCE: a Gaussian over flattened x with an exact log-density."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    """N(mean, L Lᵀ) over ``flatten(x)``; ``mean`` and the Cholesky factor ``L`` are buffers,
    so a fitted noise is checkpointed with the model and never trained."""

    def __init__(self, event_shape, mean: Tensor, scale_tril: Tensor):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("scale_tril", scale_tril.detach().clone())

    @classmethod
    def isotropic(cls, event_shape, mean: float, std: float) -> GaussianNoise:
        dim = math.prod(event_shape)
        return cls(event_shape, torch.full((dim,), float(mean)), std * torch.eye(dim))

    @classmethod
    def fit(cls, x: Tensor, min_std: float) -> GaussianNoise:
        """Mean and full covariance of ``x`` (the training set), with ``min_std²`` added to
        the diagonal: image data have pixels that never change, and a noise with zero
        variance there would make classifying data from noise trivial (and L singular)."""
        flat = x.detach().flatten(1).double()
        cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
        cov = cov + min_std**2 * torch.eye(flat.shape[1], dtype=cov.dtype)
        return cls(x.shape[1:], flat.mean(0).float(), torch.linalg.cholesky(cov).float())

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        z = torch.randn((n, len(self.mean)), generator=rng, device=self.mean.device)
        return (self.mean + z @ self.scale_tril.T).view(n, *self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """log q(x) per example."""
        diff = (x.flatten(1) - self.mean).T
        z = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False).T
        log_det = self.scale_tril.diagonal().log().sum()
        return -0.5 * z.pow(2).sum(1) - log_det - 0.5 * len(self.mean) * math.log(2 * math.pi)
