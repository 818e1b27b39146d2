"""Sample-quality metrics every modality may use, and the yardsticks a score stands beside.

A score alone says little: :class:`Yardsticks` puts it beside the same score of held-out
data (the floor: what a perfect model reaches), of noise (the ceiling) and of a
full-covariance Gaussian fitted to the training data (the simplest model: one that does
not clearly beat it has not learned), each on as many examples as the samples scored, so
a sample-size bias is the same for all. :func:`beside` names them ``<score>/heldout``,
``<score>/noise``, ``<score>/gaussian`` and ``<score>/vs_gaussian`` (the score over the
Gaussian's: below 1 beats it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

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

    The diagonal (i == j) terms are left out of the first two means, which makes the
    estimate unbiased; so it can be slightly negative when x and y come from the same
    distribution, and it is not clipped. Computed in float64; returns a Python float.
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


class FittedGaussian:
    """The Gaussian with ``train``'s mean and full (sample) covariance, factorised once.
    Exact for singular covariances (pixels that never change, fewer examples than
    dimensions); fitted in float64 on the CPU."""

    def __init__(self, train: Tensor):
        if train.shape[0] < 2:
            raise ValueError(f"fitting a Gaussian needs at least 2 examples, got {tuple(train.shape)}")
        flat = train.detach().flatten(1).to("cpu", torch.float64)
        self.shape, self.dtype, self.mean = train.shape[1:], train.dtype, flat.mean(0)
        centred = flat - self.mean
        rows, dim = centred.shape
        if dim <= rows:  # cov = F Fᵀ with F = V·√Λ
            evals, evecs = torch.linalg.eigh(centred.T @ centred / (rows - 1))
            self.factor = evecs * evals.clamp_min(0).sqrt()
        else:  # fewer examples than dimensions: cov = Vᵀ S² V / (N − 1), rank < N
            _, s, vh = torch.linalg.svd(centred, full_matrices=False)
            self.factor = vh.T * (s / math.sqrt(rows - 1))

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        """``n`` draws shaped like the training examples, drawn with ``rng`` (a CPU generator) only."""
        z = torch.randn((n, self.factor.shape[1]), generator=rng, dtype=torch.float64)
        return (self.mean + z @ self.factor.T).to(self.dtype).view(n, *self.shape)


def fitted_gaussian(train: Tensor, n: int, *, rng: torch.Generator) -> Tensor:
    """``n`` draws, shaped like ``train``'s examples, from :class:`FittedGaussian` of ``train``."""
    return FittedGaussian(train).sample(n, rng=rng)


class Yardsticks:
    """The yardsticks of one ``score`` (a function of a batch of examples giving a float).

    ``heldout``: examples never trained on (a random ``n`` of them are scored; None: no
    floor); ``noise(n, rng)``: ``n`` noise examples (None: no ceiling); ``train``: the
    examples the Gaussian is fitted to. Held-out picks and noise are drawn, in that order,
    from one generator seeded with ``seed``; the Gaussian from another (``seed + 1``).
    Each count's yardsticks are computed once.
    """

    def __init__(self, score: Callable[[Tensor], float], *, train: Tensor, heldout: Tensor | None = None,
                 noise: Callable[[int, torch.Generator], Tensor] | None = None, seed: int = 0):
        self.score, self.train, self.heldout, self.noise, self.seed = score, train, heldout, noise, seed
        self._cache: dict[int, dict[str, float]] = {}

    def __call__(self, n: int) -> dict[str, float]:
        """``{"heldout": …, "noise": …, "gaussian": …}`` (those that apply) for ``n`` examples."""
        if n not in self._cache:
            rng, out = torch.Generator().manual_seed(self.seed), {}
            if self.heldout is not None:
                out["heldout"] = self.score(self.heldout[torch.randperm(len(self.heldout), generator=rng)[:n]])
            if self.noise is not None:
                out["noise"] = self.score(self.noise(n, rng))
            gaussian = fitted_gaussian(self.train, n, rng=torch.Generator().manual_seed(self.seed + 1))
            out["gaussian"] = self.score(gaussian)
            self._cache[n] = out
        return self._cache[n]


def beside(name: str, value: float, yardsticks: dict[str, float]) -> dict[str, float]:
    """``{name: value, name/heldout: …, name/noise: …, name/gaussian: …, name/vs_gaussian: …}``."""
    out = {name: value, **{f"{name}/{k}": v for k, v in yardsticks.items()}}
    if yardsticks.get("gaussian"):
        out[f"{name}/vs_gaussian"] = value / yardsticks["gaussian"]
    return out
