"""MCMC diagnostics: autocorrelation and effective sample size of multi-chain traces.

A trace is shaped ``(n_steps, n_chains, dim)`` or ``(n_steps, n_chains)`` (one scalar per
chain and step), e.g. the stacked states of a sampler's chains. Everything is torch (FFT
for the autocovariances) and computed in float64.

The estimators are Stan's (Gelman et al., *Bayesian Data Analysis*, 3rd ed., §11.5;
the Stan reference manual, "Effective sample size"), as ArviZ implements them without
rank normalization: autocorrelations are pooled over chains, and the sum over lags is
truncated by Geyer's initial positive sequence, made monotone.

:func:`auroc` scores how well a scalar (an energy) separates two sets, for
out-of-distribution detection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["auroc", "autocorrelation", "autocovariance", "effective_sample_size"]


def _as_3d(chain: Tensor) -> tuple[Tensor, bool]:
    if chain.dim() == 2:
        return chain.double()[..., None], True
    if chain.dim() == 3:
        return chain.double(), False
    raise ValueError(f"a trace is (n_steps, n_chains, dim) or (n_steps, n_chains), got shape {tuple(chain.shape)}")


def autocovariance(chain: Tensor) -> Tensor:
    """Per-chain autocovariance γ̂ₘ(t) = (1/n) Σ_{i<n−t} (x_i − x̄ₘ)(x_{i+t} − x̄ₘ), t = 0…n−1.

    The biased (1/n) estimator, computed by FFT with zero padding. ``chain`` is
    ``(n, m, d)`` or ``(n, m)``; the result has the same shape (lag first).
    """
    x, squeeze = _as_3d(chain)
    n = x.shape[0]
    x = x - x.mean(0)
    size = 1 << (2 * n - 1).bit_length()  # ≥ 2n − 1: no circular wrap-around
    f = torch.fft.rfft(x, n=size, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=size, dim=0)[:n] / n
    return acov[..., 0] if squeeze else acov


def autocorrelation(chain: Tensor) -> Tensor:
    """Multi-chain autocorrelation ρ̂(t), t = 0…n−1, per dimension.

    With n steps and m chains, W = (1/m) Σₘ sₘ² the mean within-chain variance
    (sₘ² = n/(n−1)·γ̂ₘ(0)), B/n the variance of the chain means (ddof 1, taken as 0 when
    m = 1) and var⁺ = (n−1)/n·W + B/n::

        ρ̂(t) = 1 − (W − (1/m) Σₘ γ̂ₘ(t)) / var⁺

    with ρ̂(0) set to 1. Chains that have not mixed (B large) keep ρ̂ high, so their ESS is
    small.
    Returns shape ``(n, d)`` for a ``(n, m, d)`` trace, ``(n,)`` for ``(n, m)``.
    """
    x, squeeze = _as_3d(chain)
    n, m = x.shape[:2]
    if n < 2:
        raise ValueError("autocorrelation needs at least 2 steps")
    acov = autocovariance(x)                       # (n, m, d)
    w = acov[0].mean(0) * n / (n - 1)              # (d,)
    var_plus = w * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(0).var(0, unbiased=True)
    rho = 1 - (w - acov.mean(1)) / var_plus        # (n, d)
    rho[0] = 1.0
    return rho[:, 0] if squeeze else rho


def effective_sample_size(chain: Tensor) -> Tensor:
    """Effective sample size per dimension: ESS = m·n / τ̂.

    τ̂ = −1 + 2 Σ_{k=0}^{K−1} P̂ₖ, with P̂ₖ = ρ̂(2k) + ρ̂(2k+1) the sums of adjacent pairs of
    :func:`autocorrelation`, K the first k with P̂ₖ < 0 (Geyer's initial positive
    sequence) and each P̂ₖ replaced by min(P̂₀, …, P̂ₖ) (the initial monotone sequence).
    As in Stan/ArviZ, τ̂ also gets max(ρ̂(2K), 0), the even lag where truncation happened
    (this reduces the variance for antithetic chains). For an AR(1) process with
    coefficient ρ, τ = (1+ρ)/(1−ρ). As in Stan/ArviZ, τ̂ is
    floored at 1/log₁₀(m·n), so ESS ≤ m·n·log₁₀(m·n) (antithetic chains can exceed m·n).

    ``chain`` is ``(n, m, d)`` or ``(n, m)``; returns ``(d,)`` or a 0-d tensor (float64).
    A dimension that does not vary at all gets NaN.
    """
    rho = autocorrelation(chain)
    squeeze = rho.dim() == 1
    if squeeze:
        rho = rho[:, None]
    n, d = rho.shape
    m = chain.shape[1]
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, d).sum(1)      # P̂ₖ, (n_pairs, d)
    positive = torch.cumprod((pairs >= 0).to(torch.float64), 0)  # 1 up to the first negative
    monotone = torch.cummin(pairs, 0).values
    tau = -1 + 2 * (monotone * positive).sum(0)
    # Stan/ArviZ's refinement: add ρ̂(2K), the first lag past the truncation, when positive
    k = positive.sum(0).long()                                   # K per dimension
    lag = (2 * k).clamp(max=n - 1)
    tail = rho.gather(0, lag[None])[0].clamp(min=0)
    tau = tau + torch.where(k < n_pairs, tail, torch.zeros_like(tail))
    total = m * n
    tau = torch.clamp(tau, min=1 / math.log10(total)) if total > 1 else tau
    ess = total / tau
    return ess[0] if squeeze else ess


def auroc(scores_in: Tensor, scores_out: Tensor) -> float:
    """Area under the ROC curve of a score that should be higher out of distribution.

    The probability that a random ``scores_out`` value exceeds a random ``scores_in`` value,
    ties counting one half (the Mann–Whitney U statistic over n_in·n_out), computed from
    average ranks in float64: 1 when every out score is above every in score, 0 when
    below, 0.5 for a score that does not separate them. With energies as scores (lower =
    more in-distribution), it is the AUROC of the energy as an OOD detector.
    """
    a = torch.as_tensor(scores_in).detach().flatten().double().cpu()
    b = torch.as_tensor(scores_out).detach().flatten().double().cpu()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"auroc needs scores on both sides, got {len(a)} in and {len(b)} out")
    if a.isnan().any() or b.isnan().any():
        raise ValueError("auroc: scores contain NaN")
    both = torch.cat([a, b])
    values, inverse, counts = torch.unique(both, sorted=True, return_inverse=True, return_counts=True)
    below = torch.cumsum(counts, 0) - counts                     # elements strictly smaller
    ranks = (below + (counts + 1) / 2).double()[inverse]         # 1-based average ranks
    n_in, n_out = len(a), len(b)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))
