"""MCMC diagnostics: autocorrelation, effective sample size and R-hat of multi-chain traces.

A trace is shaped ``(n_steps, n_chains, dim)`` or ``(n_steps, n_chains)`` (one scalar per
chain and step), e.g. the stacked states of a sampler's chains. Everything is torch (FFT
for the autocovariances) and computed in float64.

:func:`effective_sample_size` is Stan's estimator (Gelman et al., *Bayesian Data
Analysis*, 3rd ed., §11.5; the Stan reference manual, "Effective sample size"), as ArviZ
implements it without rank normalization: autocorrelations are pooled over chains, and
the sum over lags is truncated by Geyer's initial positive sequence, made monotone.

:func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` are the convergence diagnostics of
Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", *Bayesian Analysis*
16(2), as Stan and ArviZ compute them: chains are split in half (a chain that drifts
shows up as two chains that disagree) and draws are replaced by the normal scores of
their ranks, so that the diagnostics exist for heavy tails (Cauchy) and do not depend on
a monotone transformation of the draws.

:func:`auroc` scores how well a scalar (an energy) separates two sets, for
out-of-distribution detection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["auroc", "autocorrelation", "autocovariance", "effective_sample_size", "ess_bulk", "ess_tail",
           "rhat", "rhat_bulk", "rhat_folded"]


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


def _pooled_variance(x: Tensor, w: Tensor) -> Tensor:
    """var⁺ = (n−1)/n·W + B/n of an (n, m, d) trace with mean within-chain variance ``w``:
    B/n is the variance of the m chain means (ddof 1; 0 for one chain). It overestimates
    the target's variance while the chains have not mixed, W underestimates it."""
    n, m = x.shape[:2]
    var_plus = w * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(0).var(0, unbiased=True)
    return var_plus


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
    n = x.shape[0]
    if n < 2:
        raise ValueError("autocorrelation needs at least 2 steps")
    acov = autocovariance(x)                       # (n, m, d)
    w = acov[0].mean(0) * n / (n - 1)              # (d,)
    rho = 1 - (w - acov.mean(1)) / _pooled_variance(x, w)  # (n, d)
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


def _split(x: Tensor) -> Tensor:
    """(n, m, d) → (⌊n/2⌋, 2m, d): the first and the last half of every chain as two chains
    (first halves, then second halves; the middle draw of an odd n dropped, as in Stan)."""
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"split-chain diagnostics need at least 4 steps, got {n}")
    half = n // 2
    return torch.cat([x[:half], x[n - half:]], 1)


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 0 of an (N, d) tensor, ties sharing their average rank."""
    cols = x.T.contiguous()
    ordered = cols.sort(-1).values
    below = torch.searchsorted(ordered, cols)               # values strictly smaller
    upto = torch.searchsorted(ordered, cols, right=True)    # values smaller or equal
    return ((below + upto + 1) / 2).double().T


def _rank_normalize(x: Tensor) -> Tensor:
    """Normal scores z = Φ⁻¹((r − 3/8)/(S + 1/4)) of the average ranks r over all S draws
    (every chain) of each dimension of an (n, m, d) trace; a dimension with a NaN gets NaN."""
    n, m, d = x.shape
    flat = x.reshape(n * m, d)
    z = torch.special.ndtri((_average_ranks(flat) - 0.375) / (n * m + 0.25))
    return torch.where(flat.isnan().any(0), torch.nan, z).reshape(n, m, d)


def _quantile(flat: Tensor, p: float) -> Tensor:
    """The p-quantile of each column of an (N, d) tensor, interpolated linearly between order
    statistics (NumPy's default; torch.quantile refuses columns of more than 2²⁴ draws).
    NaN for a column with a NaN."""
    ordered = flat.sort(0).values
    pos = p * (len(flat) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(flat) - 1)
    q = ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])
    return torch.where(flat.isnan().any(0), torch.nan, q)


def _rhat(x: Tensor) -> Tensor:
    """sqrt(var⁺/W) of an (n, m, d) trace (m ≥ 2), W the mean within-chain variance (ddof 1)."""
    w = x.var(0).mean(0)
    return (_pooled_variance(x, w) / w).sqrt()


def rhat_bulk(chain: Tensor) -> Tensor:
    """Rank-normalized split R-hat: R-hat of the normal scores of the split chains.

    Near 1 when the chains agree on location; above 1 (Vehtari et al. recommend 1.01 as
    the threshold) when some chain sits elsewhere or drifts. Blind to chains that differ
    only in scale: see :func:`rhat_folded`. ``chain`` is ``(n, m, d)`` or ``(n, m)``
    with n ≥ 4; returns ``(d,)`` or a 0-d tensor (float64). A constant dimension gets NaN.
    """
    x, squeeze = _as_3d(chain)
    r = _rhat(_rank_normalize(_split(x)))
    return r[0] if squeeze else r


def rhat_folded(chain: Tensor) -> Tensor:
    """Rank-normalized folded split R-hat: :func:`rhat_bulk` of |x − median(x)|.

    Folding turns a difference in spread into a difference in location, so chains with
    equal means but different scales (one stuck in a funnel's neck, one in its mouth) are
    flagged. Same shapes as :func:`rhat_bulk`.
    """
    x, squeeze = _as_3d(chain)
    split = _split(x)
    median = _quantile(split.reshape(-1, split.shape[2]), 0.5)
    r = _rhat(_rank_normalize((split - median).abs()))
    return r[0] if squeeze else r


def rhat(chain: Tensor) -> Tensor:
    """R-hat of Vehtari et al. (2021): max(:func:`rhat_bulk`, :func:`rhat_folded`).

    Flags chains that disagree in location or in scale; with heavy tails (Cauchy draws)
    it stays finite and near 1 for mixed chains, because the ranks are. Same shapes as
    :func:`rhat_bulk`.
    """
    return torch.maximum(rhat_bulk(chain), rhat_folded(chain))


def ess_bulk(chain: Tensor) -> Tensor:
    """Bulk effective sample size: :func:`effective_sample_size` of the normal scores of the
    split chains. The precision of estimates of the centre of the distribution (mean,
    median); it exists whether or not the target has a finite variance. ``chain`` is
    ``(n, m, d)`` or ``(n, m)`` with n ≥ 4; returns ``(d,)`` or a 0-d tensor (float64).
    """
    x, squeeze = _as_3d(chain)
    ess = effective_sample_size(_rank_normalize(_split(x)))
    return ess[0] if squeeze else ess


def ess_tail(chain: Tensor) -> Tensor:
    """Tail effective sample size: the smaller of the :func:`effective_sample_size` of the
    split indicator chains I(x ≤ q₀.₀₅) and I(x ≤ q₀.₉₅), q the quantiles over all draws.
    The precision of the 5 % and 95 % quantiles (a 90 % interval); chains that rarely visit
    a tail have a small tail ESS even when their bulk ESS is large. Same shapes as
    :func:`ess_bulk`; NaN where an indicator does not vary over the split chains.
    """
    x, squeeze = _as_3d(chain)
    flat = x.reshape(-1, x.shape[2])
    low, high = (effective_sample_size(_split((x <= _quantile(flat, p)).double())) for p in (0.05, 0.95))
    ess = torch.minimum(low, high)
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
    ranks = _average_ranks(torch.cat([a, b])[:, None])[:, 0]
    n_in, n_out = len(a), len(b)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))
