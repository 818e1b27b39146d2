"""Conformance checks that any sampler plugin (bundled or third-party) runs on itself.

Each check samples an analytic target whose answer is known exactly, from stated starting
points, and compares the chain ends' moments (in float64) at stated tolerances. A failure
raises ``AssertionError`` naming the sampler and printing what it measured, the exact
values and the tolerances; a success returns what it measured::

    from ebmcore.testing import check_gaussian_2d
    check_gaussian_2d(MySampler(step_size=0.01, n_steps=1500))

The checks (see ``docs/sampler-conformance.md``):

- :func:`check_gaussian_2d`: a correlated 2-D Gaussian (absolute tolerances per entry);
- :func:`check_anisotropic_gaussian`: scales 1 and 0.1, correlation 0.9 (condition 535);
- :func:`check_gaussian_10d`: a fixed random 10-D Gaussian, eigenvalues in [0.25, 2];
- :func:`check_mixture`: well-separated mixtures in 1-D (2 modes) and 2-D (3 modes);
- :func:`check_banana`: Haario's twisted Gaussian.

The last four measure errors in the target's own units, so one tolerance means the same
thing on every scale: with Σ the exact covariance,

- mean error ``‖Σ^{-1/2} (m̂ − μ)‖₂``: how far the sample mean is off, in standard deviations
  of the target along the worst direction;
- covariance error ``‖Σ^{-1/2} Ĉ Σ^{-1/2} − I‖₂`` (spectral norm): the largest relative
  error of the variance along any direction (0.1: some direction's variance is 10 % off);
- on the Gaussians, stiffest-direction error ``vᵀĈv/λ − 1`` with λ the smallest eigenvalue
  of Σ and v its eigenvector (:func:`stiffest_direction_error`): the relative error of the
  variance where gradient samplers go wrong first (a step-size bias is largest there, and a
  fixed HMC trajectory that turns this direction by ≈ π per step mirrors chains instead of
  mixing them). One direction fixed in advance has a smaller sampling error than the worst
  of d, so this tolerance can be tighter than the covariance error's.

With n independent chain ends from the exact target these errors are of order
``sqrt(d/n)``, ``2·sqrt(d/n)`` and ``sqrt(2/n)``; each tolerance is that sampling error at
a one-in-ten-thousand level plus a stated allowance for bias. The kit imports no plugin.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ebmcore.interfaces import Energy
from ebmcore.sampling import nonfinite_chains

__all__ = [
    "ANISOTROPIC_COV", "BananaEnergy", "GaussianEnergy", "MixtureEnergy",
    "check_anisotropic_gaussian", "check_banana", "check_gaussian_2d", "check_gaussian_10d",
    "check_mixture", "gaussian_10d_target", "mixture_targets", "moments", "standardized_errors",
    "stiffest_direction_error",
]


class GaussianEnergy(Energy):
    """E(x) = ½ (x − μ)ᵀ Σ⁻¹ (x − μ): the energy of N(μ, Σ)."""

    def __init__(self, mean: Tensor, cov: Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("precision", torch.linalg.inv(cov.double()).float())
        self.register_buffer("scale_tril", torch.linalg.cholesky(cov.double()).float(), persistent=False)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        d = x - self.mean
        return 0.5 * torch.einsum("bi,ij,bj->b", d, self.precision, d)

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        """``n`` exact draws."""
        z = torch.randn(n, self.mean.numel(), generator=rng)
        return self.mean + z @ self.scale_tril.T


class MixtureEnergy(Energy):
    """E(x) = −log Σₖ wₖ N(x; μₖ, σₖ² I): a mixture of isotropic Gaussians."""

    def __init__(self, weights: Tensor, means: Tensor, scales: Tensor):
        super().__init__()
        self.register_buffer("weights", weights.float())
        self.register_buffer("means", means.float())      # (K, d)
        self.register_buffer("scales", scales.float())    # (K,)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        d = self.means.shape[1]
        sq = (x[:, None, :] - self.means).pow(2).sum(-1)  # (batch, K)
        logp = self.weights.log() - d * self.scales.log() - sq / (2 * self.scales**2)
        return -torch.logsumexp(logp, dim=1)

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        """``n`` exact draws."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=rng)
        return self.means[k] + self.scales[k, None] * torch.randn(n, self.means.shape[1], generator=rng)


class BananaEnergy(Energy):
    """Haario's twisted Gaussian: x₁ ~ N(0, σ₁²), x₂ | x₁ ~ N(b·(x₁² − σ₁²), 1).

    E(x) = x₁²/(2σ₁²) + (x₂ − b·(x₁² − σ₁²))²/2. Exactly: mean 0, Var x₁ = σ₁²,
    Cov(x₁, x₂) = 0, Var x₂ = 1 + 2b²σ₁⁴, and the twist E[x₁² x₂] = 2bσ₁⁴.
    """

    def __init__(self, sigma1: float = 1.0, b: float = 1.0):
        super().__init__()
        self.sigma1, self.b = sigma1, b

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        return 0.5 * (x1 / self.sigma1) ** 2 + 0.5 * (x2 - self.b * (x1**2 - self.sigma1**2)) ** 2

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        """``n`` exact draws."""
        x1 = self.sigma1 * torch.randn(n, generator=rng)
        x2 = self.b * (x1**2 - self.sigma1**2) + torch.randn(n, generator=rng)
        return torch.stack([x1, x2], 1)


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and covariance of ``x`` (n, d), in float64."""
    x = x.double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def standardized_errors(m: Tensor, c: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float]:
    """(‖Σ^{-1/2}(m − μ)‖₂, ‖Σ^{-1/2} C Σ^{-1/2} − I‖₂) in float64: the mean error in
    standard deviations and the largest relative variance error over all directions."""
    mean, cov = mean.double(), cov.double()
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag(evals.rsqrt()) @ evecs.T  # Σ^{-1/2}
    mean_err = torch.linalg.vector_norm(w @ (m.double() - mean))
    cov_err = torch.linalg.eigvalsh(w @ c.double() @ w - torch.eye(len(mean), dtype=torch.float64)).abs().max()
    return mean_err.item(), cov_err.item()


def stiffest_direction_error(c: Tensor, cov: Tensor) -> float:
    """vᵀ C v / λ − 1 in float64, with λ the smallest eigenvalue of Σ = ``cov`` and v its unit
    eigenvector: the relative error of the variance along the target's stiffest direction,
    signed (0.86 when it comes out 1.86× the truth). It is the (v, v) entry of
    Σ^{-1/2} C Σ^{-1/2} − I, so never larger in size than the covariance error of
    :func:`standardized_errors`; from n exact draws its standard deviation is sqrt(2/(n − 1))."""
    evals, evecs = torch.linalg.eigh(cov.double())
    v = evecs[:, 0]
    return (v @ c.double() @ v / evals[0] - 1).item()


# ---------------------------------------------------------------- reporting

def _fmt(t: Any) -> str:
    if isinstance(t, Tensor):
        t = t.tolist()
    if isinstance(t, float):
        return f"{t:.4g}"
    if isinstance(t, list):
        return "[" + ", ".join(_fmt(v) for v in t) + "]"
    return repr(t)


def _run(sampler, energy: nn.Module, x0: Tensor, n_steps: int | None, rng: torch.Generator,
         what: str) -> Tensor:
    with nonfinite_chains("ignore"):  # reported below, as a failed check
        x = sampler.run(x0, energy, n_steps, rng=rng)
    if x.shape != x0.shape:
        raise AssertionError(f"sampler {sampler!r} returned shape {tuple(x.shape)} from starts {tuple(x0.shape)}")
    bad = (~torch.isfinite(x)).any(1).sum().item()
    if bad:
        raise AssertionError(f"sampler {sampler!r} does not sample {what}: {bad} of {len(x)} chains "
                             "ended non-finite (diverged; a smaller step may help)")
    return x


_UNITS = ("  (mean error: ‖Σ^-1/2 (mean − μ)‖, in standard deviations; cov error: ‖Σ^-1/2 cov Σ^-1/2 − I‖₂, "
          "the worst relative variance error over directions; stiffest-direction error: |vᵀ cov v/λ − 1|, "
          "the relative variance error along the eigenvector v of Σ's smallest eigenvalue λ; "
          "per mode with Σ = σₖ² I)")


def _verdict(sampler, what: str, rows: list[tuple[str, float, float, str]]) -> None:
    """rows: (quantity, error, tolerance, details). Fails if any error exceeds (or is NaN)."""
    failed = [r for r in rows if not r[1] <= r[2]]
    if failed:
        head = "; ".join(f"{q} {err:.4g} > tol {tol:g}" for q, err, tol, _ in failed)
        body = "\n".join(f"  {q} {err:.4g} (tol {tol:g}){': ' + d if d else ''}" for q, err, tol, d in rows)
        raise AssertionError(f"sampler {sampler!r} does not sample {what}: {head}\n{body}\n{_UNITS}")


def _gaussian_check(sampler, what, mean, cov, x0, n_steps, rng, mean_tol, cov_tol, stiff_tol) -> dict[str, Any]:
    energy = GaussianEnergy(mean, cov)
    x = _run(sampler, energy, x0, n_steps, rng, what)
    m, c = moments(x)
    mean_err, cov_err = standardized_errors(m, c, mean, cov)
    stiff_err = stiffest_direction_error(c, cov)
    _verdict(sampler, what, [
        ("mean error", mean_err, mean_tol, f"measured {_fmt(m)}, exact {_fmt(mean.double())}"),
        ("cov error", cov_err, cov_tol, f"measured {_fmt(c)}, exact {_fmt(cov.double())}"),
        ("stiffest-direction error", abs(stiff_err), stiff_tol,
         f"variance along the stiffest direction {1 + stiff_err:.4g}× exact"),
    ])
    return {"mean": m, "cov": c, "mean_error": mean_err, "cov_error": cov_err, "stiffest_error": stiff_err}


# ---------------------------------------------------------------- checks

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


ANISOTROPIC_COV = torch.tensor([[1.0, 0.9 * 0.1], [0.9 * 0.1, 0.01]])


def check_anisotropic_gaussian(sampler, *, n_chains: int = 4000, n_steps: int | None = None,
                               seed: int = 0, mean_tol: float = 0.1, cov_tol: float = 0.12,
                               stiff_tol: float = 0.14) -> dict[str, Any]:
    """Sample N(0, Σ), Σ = [[1, 0.09], [0.09, 0.01]] (scales 1 and 0.1, correlation 0.9).

    Σ's eigenvalues are 1.0081 and 0.001885 (standard deviations 1.004 and 0.0434): the
    precision's largest eigenvalue is 530.5, so a gradient step s is stable only for
    s < 2/530.5 = 0.00377, and ULA's stationary variance along that direction is
    1/(1 − 265·s) times too large (26 % at s = 0.001). Starts: x0 ~ N(0, I), far too wide
    across the narrow direction. Along the wide one N(0, I) is already within 1 % of the
    target, so this check probes step-size bias on a stiff direction; mixing along slow
    directions is what :func:`check_gaussian_10d` probes.

    Errors are standardized (see the module docstring). On exact draws from 4,000 chains
    (300 seeds) the mean error averages 0.020 (99th percentile 0.047, worst 0.054) and the
    covariance error 0.034 (99th percentile 0.072, worst 0.086). Tolerances: ``mean_tol``
    0.1; ``cov_tol`` 0.12, leaving about 0.05 for bias: 5 % on any direction's variance.
    ULA passes at s = 0.0001 (bias 2.7 %), is borderline at s = 0.0003 (bias 8.7 %) and
    fails at s = 0.001 (bias 36 %). The stiffest-direction error (signed; on exact draws,
    300 seeds, its size averages 0.018, 99th percentile 0.056, worst 0.075) has ``stiff_tol``
    0.14: 0.087 at one in ten thousand (3.9 standard deviations of sqrt(2/n)) plus 0.05 for
    bias, as in :func:`check_gaussian_10d`. On this 2-D target the covariance error, which
    bounds it, is the stricter test; the row names the direction that failed.

    Returns ``{"mean", "cov", "mean_error", "cov_error", "stiffest_error"}`` (float64
    tensors, floats).
    """
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 2, generator=rng)
    return _gaussian_check(sampler, "the anisotropic Gaussian N(0, [[1, 0.09], [0.09, 0.01]])",
                           torch.zeros(2), ANISOTROPIC_COV, x0, n_steps, rng, mean_tol, cov_tol, stiff_tol)


def gaussian_10d_target() -> tuple[Tensor, Tensor]:
    """(μ, Σ) of :func:`check_gaussian_10d`: fixed, drawn from ``torch.Generator`` seed 1234.

    μ ~ N(0, I); Σ = Q diag(λ) Qᵀ with Q a random rotation (QR of a Gaussian matrix) and
    λ log-uniform in [0.25, 2], with 0.25 and 2 included (condition number exactly 8).
    """
    g = torch.Generator().manual_seed(1234)
    mean = torch.randn(10, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    u = torch.rand(10, generator=g, dtype=torch.float64)
    u[0], u[1] = 0.0, 1.0
    lam = 0.25 * 8.0**u
    return mean.float(), ((q * lam) @ q.T).float()


def check_gaussian_10d(sampler, *, n_chains: int = 4000, n_steps: int | None = None, seed: int = 0,
                       mean_tol: float = 0.15, cov_tol: float = 0.2, stiff_tol: float = 0.14) -> dict[str, Any]:
    """Sample a fixed random 10-D Gaussian N(μ, Σ) (:func:`gaussian_10d_target`) from N(0, I).

    Σ's eigenvalues are log-uniform in [0.25, 2] (precision eigenvalues in [0.5, 4]), μ
    has norm about 3, so the starts are off in mean (by about 4 standard deviations) and in
    covariance: the sampler must mix along all ten directions.

    Errors are standardized (see the module docstring). On exact draws from 4,000 chains
    (300 seeds) the mean error averages 0.050 (≈ sqrt(10/n); 99th percentile 0.074, worst
    0.085) and the covariance error 0.092 (≈ 2·sqrt(10/n); 99th percentile 0.127, worst
    0.135). Tolerances: ``mean_tol`` 0.15, ``cov_tol`` 0.2, leaving about 0.06 for bias
    and incomplete mixing. ULA passes at s = 0.02 with 800 steps (bias 4 %).

    The stiffest direction (λ = 0.25, standard deviation 0.5, precision 4) is where a
    step-size bias is largest (ULA's variance there is 1/(1 − 2s) too large: 4 % at
    s = 0.02) and where an HMC trajectory of fixed length resonates: with ε·L·2 ≈ π every
    trajectory turns it by ≈ π and the chains are mirrored there, not mixed. Its variance
    error (signed; on exact draws, 300 seeds, its size averages 0.017, 99th percentile
    0.054, worst 0.072) has ``stiff_tol`` 0.14, as in :func:`check_anisotropic_gaussian`:
    0.087 at one in ten thousand plus 0.05 for bias, tighter than ``cov_tol`` because this
    direction is fixed in advance, not the worst of ten.

    Returns ``{"mean", "cov", "mean_error", "cov_error", "stiffest_error"}``.
    """
    mean, cov = gaussian_10d_target()
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 10, generator=rng)
    return _gaussian_check(sampler, "the 10-D Gaussian of gaussian_10d_target()", mean, cov, x0,
                           n_steps, rng, mean_tol, cov_tol, stiff_tol)


def mixture_targets() -> dict[str, MixtureEnergy]:
    """The two mixtures of :func:`check_mixture`.

    ``"1d"``: weights (0.3, 0.7), means (−4, 4), scales (0.5, 1).
    ``"2d"``: weights (0.2, 0.3, 0.5), means at radius 4, angles 90°, 210°, 330°
    (6.93 apart), isotropic scales (0.5, 0.7, 1).
    """
    ang = torch.deg2rad(torch.tensor([90.0, 210.0, 330.0], dtype=torch.float64))
    return {
        "1d": MixtureEnergy(torch.tensor([0.3, 0.7]), torch.tensor([[-4.0], [4.0]]), torch.tensor([0.5, 1.0])),
        "2d": MixtureEnergy(torch.tensor([0.2, 0.3, 0.5]), (4 * torch.stack([ang.cos(), ang.sin()], 1)).float(),
                            torch.tensor([0.5, 0.7, 1.0])),
    }


def check_mixture(sampler, *, n_chains: int = 4000, n_steps: int | None = None, seed: int = 0,
                  weight_tol: float = 0.04, mean_tol: float = 0.2, cov_tol: float = 0.3) -> dict[str, Any]:
    """Sample the well-separated mixtures of :func:`mixture_targets` (1-D, then 2-D).

    The modes are separated by barriers of 8 nats or more, which no local sampler crosses in
    a feasible run, so starts cannot be arbitrary: each chain's mode is drawn with the exact
    weights, and it starts at ``μₖ + 0.5·σₖ·z`` (half the mode's spread). The check is
    fair to local samplers and verifies that the sampler *preserves* the target: mode
    weights stay right (no leaking, no divergence; a sampler that does cross barriers
    keeps them right too), and within each mode the sampler must widen its chains to the
    right mean and covariance. A sampler that does not move fails the per-mode covariance.

    Each sample is assigned to its nearest mode; the exact mass of a component beyond the
    midway boundary is below 3·10⁻⁴, so the exact per-mode values are the components'.
    Tolerances (4,000 chains; the smallest mode holds about 800): ``weight_tol`` 0.04
    absolute on each weight (sampling sd ≤ sqrt(0.25/n) = 0.008, so 5 sd); per mode,
    ``mean_tol`` 0.2 on ‖m̂ₖ − μₖ‖/σₖ and ``cov_tol`` 0.3 on ‖Ĉₖ/σₖ² − I‖ (the worst mode
    of the 2-D mixture; on exact draws, 300 seeds: mean error 99th percentile 0.11, worst
    0.14; covariance error 99th percentile 0.21, worst 0.24). ULA passes at s = 0.01 with
    500 steps (2-D covariance error 0.10).

    Returns ``{"1d": {"weights", "means", "covs", ...errors}, "2d": {...}}``.
    """
    rng = torch.Generator().manual_seed(seed)
    out = {}
    for name, energy in mixture_targets().items():
        w, mu, sd = energy.weights.double(), energy.means.double(), energy.scales.double()
        k_dim = mu.shape[1]
        k0 = torch.multinomial(energy.weights, n_chains, replacement=True, generator=rng)
        x0 = energy.means[k0] + 0.5 * energy.scales[k0, None] * torch.randn(n_chains, k_dim, generator=rng)
        what = f"the {name} mixture (weights {_fmt(w)}, means {_fmt(mu)}, scales {_fmt(sd)})"
        x = _run(sampler, energy, x0, n_steps, rng, what).double()
        k = torch.cdist(x, mu).argmin(1)
        weights = torch.bincount(k, minlength=len(w)).double() / n_chains
        rows = [("weight error", (weights - w).abs().max().item(), weight_tol,
                 f"measured {_fmt(weights)}, exact {_fmt(w)}")]
        means, covs, mean_errs, cov_errs = [], [], [], []
        for j in range(len(w)):
            xj = x[k == j]
            if len(xj) < 2:
                mean_errs.append(math.inf), cov_errs.append(math.inf)
                means.append(torch.full((k_dim,), math.nan, dtype=torch.float64))
                covs.append(torch.full((k_dim, k_dim), math.nan, dtype=torch.float64))
                continue
            m, c = moments(xj)
            me, ce = standardized_errors(m, c, mu[j], sd[j] ** 2 * torch.eye(k_dim, dtype=torch.float64))
            means.append(m), covs.append(c), mean_errs.append(me), cov_errs.append(ce)
        exact_covs = [(s**2 * torch.eye(k_dim, dtype=torch.float64)).tolist() for s in sd]
        rows += [("per-mode mean error", max(mean_errs), mean_tol,
                  f"measured {_fmt(torch.stack(means))} (in σₖ: {_fmt(mean_errs)}), exact {_fmt(mu)}"),
                 ("per-mode cov error", max(cov_errs), cov_tol,
                  f"measured {_fmt(torch.stack(covs))} (relative: {_fmt(cov_errs)}), exact {_fmt(exact_covs)}")]
        _verdict(sampler, what, rows)
        out[name] = {"weights": weights, "means": torch.stack(means), "covs": torch.stack(covs),
                     "weight_error": rows[0][1], "mean_error": max(mean_errs), "cov_error": max(cov_errs)}
    return out


def check_banana(sampler, *, n_chains: int = 4000, n_steps: int | None = None, seed: int = 0,
                 b: float = 1.0, mean_tol: float = 0.12, cov_tol: float = 0.25,
                 twist_tol: float = 0.7) -> dict[str, Any]:
    """Sample Haario's twisted Gaussian (:class:`BananaEnergy`, σ₁ = 1, b = 1) from N(0, I).

    x₁ ~ N(0, 1), x₂ | x₁ ~ N(b(x₁² − 1), 1): mean (0, 0), Σ = diag(1, 1 + 2b²) = diag(1, 3),
    and the twist E[x₁² x₂] = 2b = 2, which a Gaussian with the same mean and covariance
    gets wrong (0). The curvature of E along the banana reaches 1 + 4b²x₁², about 37 at
    x₁ = 3, so gradient samplers need steps well below 2/37.

    Errors are standardized (see the module docstring). The target is not Gaussian, so
    sampling errors are wider than a Gaussian's. On exact draws from 4,000 chains (300
    seeds): mean error average 0.019, worst 0.058; covariance error average 0.056, worst
    0.17; twist error average 0.11, worst 0.40 (its standard error is
    sqrt((74b² + 3)/n) = 0.14). Tolerances: ``mean_tol`` 0.12 on ‖Σ^{-1/2}(m̂ − μ)‖,
    ``cov_tol`` 0.25 on ‖Σ^{-1/2} Ĉ Σ^{-1/2} − I‖, ``twist_tol`` 0.7 absolute on
    E[x₁² x₂] (5 standard errors). ULA passes at s = 0.01 with 2,000 steps (twist error
    0.04, covariance error 0.02); with 600 steps x₂ has not relaxed and it only just passes
    (twist error 0.65, covariance error 0.22).

    Returns ``{"mean", "cov", "twist", "mean_error", "cov_error", "twist_error"}``.
    """
    energy = BananaEnergy(1.0, b)
    mean = torch.zeros(2)
    cov = torch.tensor([[1.0, 0.0], [0.0, 1.0 + 2 * b * b]])
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 2, generator=rng)
    what = f"the banana (x1 ~ N(0, 1), x2 | x1 ~ N({b:g}·(x1² − 1), 1))"
    x = _run(sampler, energy, x0, n_steps, rng, what).double()
    m, c = moments(x)
    mean_err, cov_err = standardized_errors(m, c, mean, cov)
    twist = (x[:, 0] ** 2 * x[:, 1]).mean().item()
    twist_err = abs(twist - 2 * b)
    _verdict(sampler, what, [
        ("mean error", mean_err, mean_tol, f"measured {_fmt(m)}, exact {_fmt(mean.double())}"),
        ("cov error", cov_err, cov_tol, f"measured {_fmt(c)}, exact {_fmt(cov.double())}"),
        ("twist error", twist_err, twist_tol, f"measured E[x1² x2] = {twist:.4g}, exact {2 * b:g}"),
    ])
    return {"mean": m, "cov": c, "twist": twist, "mean_error": mean_err, "cov_error": cov_err,
            "twist_error": twist_err}


class CountingEnergy(nn.Module):
    """N(0, I) energy that counts its calls (to check gradients per step); NaN where the
    first coordinate exceeds ``nan_above`` (to check that NaN proposals are rejected)."""

    def __init__(self, nan_above: float = math.inf):
        super().__init__()
        self.calls, self.nan_above = 0, nan_above

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.calls += 1
        e = 0.5 * x.pow(2).sum(1)
        return torch.where(x[:, 0] > self.nan_above, torch.nan, e)


def check_rng_discipline(sampler, *, n_steps: int = 10) -> None:
    """The same ``rng`` seed gives the same chains, another seed other chains, and torch's
    global RNG is untouched (all randomness comes from the ``rng`` argument)."""
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    before = torch.get_rng_state()
    a, b, c = (sampler.run(torch.zeros(16, 2), energy, n_steps, rng=torch.Generator().manual_seed(s))
               for s in (3, 3, 4))
    assert torch.equal(a, b), f"sampler {sampler!r}: the same rng seed gave different chains"
    assert not torch.equal(a, c), f"sampler {sampler!r}: different rng seeds gave the same chains"
    assert torch.equal(before, torch.get_rng_state()), f"sampler {sampler!r} used torch's global RNG"


def check_carried_state(sampler, *, n_steps: int = 3, seed: int = 0) -> None:
    """For kernels whose state carries E and ∇E: after a few steps they are those of the
    state's position (an accepted proposal's values taken over, a rejected one's dropped),
    and steps called with grad enabled kept the chain off autograd's graph."""
    energy = GaussianEnergy(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    rng = torch.Generator().manual_seed(seed)
    state = sampler.init(torch.randn(64, 2, generator=rng), energy, rng=rng)
    for _ in range(n_steps):
        state, _ = sampler.step(state, energy, rng=rng)  # outside run_chain: grad enabled
    assert not state.x.requires_grad, f"sampler {sampler!r}: a step put its update on autograd's graph"
    x = state.x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(x).sum(), x)
    assert torch.allclose(state.energy, energy(state.x)), f"sampler {sampler!r} carries a stale energy"
    assert torch.allclose(state.grad, g), f"sampler {sampler!r} carries a stale gradient"


def check_nan_rejected(sampler, *, n_steps: int = 30, seed: int = 0) -> None:
    """For Metropolis kernels (Info has ``acceptance_prob``): proposals where E is NaN are
    rejected with probability 0, never taken into the state."""
    energy = CountingEnergy(nan_above=0.5)  # NaN on half the space
    rng = torch.Generator().manual_seed(seed)
    state = sampler.init(torch.full((512, 2), -1.0), energy, rng=rng)
    rejected = 0
    for _ in range(n_steps):
        state, info = sampler.step(state, energy, rng=rng)
        assert not info.acceptance_prob.isnan().any(), f"sampler {sampler!r}: NaN acceptance probability"
        rejected += int((info.acceptance_prob == 0).sum())
    assert state.x.isfinite().all() and not state.energy.isnan().any() and (state.x[:, 0] <= 0.5).all(), (
        f"sampler {sampler!r} took a proposal whose energy is NaN")
    assert rejected > 0, "no proposal reached the NaN region: the check did not test anything"


def check_masked_conditional(sampler, *, n_chains: int = 4000, n_steps: int | None = None, seed: int = 0) -> None:
    """With coordinate 0 observed, N(0, [[1, 0.6], [0.6, 0.8]]) must keep it bit-identical
    (−0.0 included) and sample the free one from the conditional N(0.6·x₀, 0.44)."""
    energy = GaussianEnergy(torch.zeros(2), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, 2, generator=rng)
    x0[:8, 0] = -0.0
    x = sampler.run(x0, energy, n_steps, rng=rng, mask=torch.tensor([True, False]))
    assert torch.equal(x[:, 0], x0[:, 0]) and torch.equal(x[:, 0].signbit(), x0[:, 0].signbit()), (
        f"sampler {sampler!r} moved observed coordinates")
    resid = x[:, 1].double() - 0.6 * x0[:, 0].double()
    assert abs(resid.mean()) < 0.05 and abs(resid.var() - 0.44) < 0.05, (
        f"sampler {sampler!r}: free coordinate mean {resid.mean():.3f} var {resid.var():.3f}, "
        "conditional 0 and 0.44, tolerance 0.05")
