"""Sample-quality metrics for the 2-D toy data sets, and the baseline to beat."""

from __future__ import annotations

import torch
from torch import Tensor


def _gaussian_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    # The direct (non-matmul) distance keeps k(a, a) exactly 1 and avoids the
    # cancellation error of ||a||^2 + ||b||^2 - 2ab for nearby points.
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.exp(-(d * d) / (2.0 * bandwidth * bandwidth))


def mmd2(x: Tensor, y: Tensor, bandwidth: float) -> float:
    r"""Unbiased estimate of the squared Maximum Mean Discrepancy between samples.

    With the Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)), h = ``bandwidth``,
    x of shape (n, d) and y of shape (m, d), n, m >= 2:

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j)
                + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                - 2/(n m)    sum_{i, j}   k(x_i, y_j)

    The diagonal (i == j) terms are left out of the first two means, which
    makes the estimate unbiased; so it can be slightly negative when x and y
    come from the same distribution, and it is not clipped. Computed in
    float64; returns a Python float.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"need at least 2 points in each sample, got n={n}, m={m}")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    x = x.detach().to("cpu", torch.float64)
    y = y.detach().to("cpu", torch.float64)
    kxx = _gaussian_kernel(x, x, bandwidth)
    kyy = _gaussian_kernel(y, y, bandwidth)
    kxy = _gaussian_kernel(x, y, bandwidth)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def gaussian_fit_baseline(train: Tensor, n: int, *, rng: torch.Generator) -> Tensor:
    """Draw ``n`` samples from one Gaussian fitted (mean, full covariance) to ``train``.

    This is the trivial density model a trained EBM must beat on MMD. The
    samples have ``train``'s dtype and are drawn with ``rng`` only.
    """
    if train.dim() != 2 or train.shape[0] < 2:
        raise ValueError(f"train must be (N, d) with N >= 2, got {tuple(train.shape)}")
    data = train.detach().to("cpu", torch.float64)
    mean = data.mean(dim=0)
    cov = torch.cov(data.T).reshape(data.shape[1], data.shape[1])
    # A tiny jitter keeps the Cholesky factor defined for degenerate train sets.
    jitter = 1e-12 * max(float(cov.diagonal().max()), 1.0)
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(cov.shape[0], dtype=torch.float64))
    z = torch.randn((n, data.shape[1]), generator=rng, dtype=torch.float64)
    return (mean + z @ chol.T).to(train.dtype)
