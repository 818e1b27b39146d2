"""Conformance checks that any sampler plugin (bundled or third-party) runs on itself.

Each check samples an analytic target with a known answer and compares moments at a
stated tolerance; a failure prints what it measured::

    from ebmcore.testing import check_gaussian_2d
    check_gaussian_2d(MySampler(step_size=0.01, n_steps=1500))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianEnergy(nn.Module):
    """E(x) = ½ (x − μ)ᵀ Σ⁻¹ (x − μ): the energy of N(μ, Σ)."""

    def __init__(self, mean: Tensor, cov: Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("precision", torch.linalg.inv(cov.double()).float())

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        d = x - self.mean
        return 0.5 * torch.einsum("bi,ij,bj->b", d, self.precision, d)


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and covariance of ``x`` (n, d), in float64."""
    x = x.double()
    return x.mean(0), torch.cov(x.T)


def check_gaussian_2d(sampler, *, n_chains: int = 4000, n_steps: int | None = None, seed: int = 0,
                      mean_tol: float = 0.06, cov_tol: float = 0.08) -> tuple[Tensor, Tensor]:
    """Sample N(μ, Σ) with μ = (1, −1), Σ = [[1, 0.6], [0.6, 0.8]] from N(0, I) starts.

    Tolerances are absolute, on every entry; with 4,000 chains the sampling error of a
    covariance entry is about 0.02, the rest of the tolerance is the sampler's bias (ULA
    at step 0.01 is biased by about 2 %). Returns the measured (mean, cov).
    """
    mean = torch.tensor([1.0, -1.0])
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    energy = GaussianEnergy(mean, cov)
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 2, generator=rng)
    x = sampler.run(x0, energy, n_steps, rng=rng)
    m, c = moments(x)
    assert (m - mean.double()).abs().max() < mean_tol and (c - cov.double()).abs().max() < cov_tol, (
        f"sampler {sampler!r} does not sample N(mu, Sigma): mean {m.tolist()} (exact {mean.tolist()}, "
        f"tol {mean_tol}); cov {c.tolist()} (exact {cov.tolist()}, tol {cov_tol})")
    return m, c
