"""log Z of an energy by annealed importance sampling (Neal 2001), from below and from above.

AIS walks chains from a tractable, normalised base p₀ to exp(−E)/Z along the geometric path
E_β = (1 − β)·E₀ + β·E (E₀ = −log p₀), with any sampler as the transition at each β, and
weighs each chain by how much more likely the path's next distribution makes it:
log w = Σₜ (β_{t−1} − βₜ)·(E(x) − E₀(x)). E[w] = Z, so log mean w estimates log Z, from below
on average (Jensen): a log-likelihood −E(x) − log Ẑ is optimistic.

Reverse AIS (the other half of bidirectional Monte Carlo, Grosse et al. 2015) runs the same
path backwards from samples of exp(−E)/Z; E[w_rev] = 1/Z, so −log mean w_rev estimates log Z
from above on average, and the log-likelihood it gives is conservative. Exact samples of a
trained model are not available; long chains of it stand in, and the bound then holds only
as far as they have converged. Report both: the truth is between them when both are sound,
and their gap says how far from it either may be.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from ebmcore.interfaces import Sampler


class GaussianBase(nn.Module):
    """N(μ, Σ) as an AIS base: ``sample`` and its energy ``−log p(x)`` (normalised)."""

    def __init__(self, mean: Tensor, cov: Tensor):
        super().__init__()
        chol = torch.linalg.cholesky(cov.double())
        self.register_buffer("mean", mean.double())
        self.register_buffer("scale_tril", chol)
        self.log_norm = 0.5 * mean.numel() * math.log(2 * math.pi) + float(chol.diagonal().log().sum())

    @classmethod
    def fit(cls, x: Tensor, ridge: float = 1e-6) -> GaussianBase:
        """The Gaussian fitted to the rows of ``x`` (a ridge keeps its covariance invertible)."""
        x = x.flatten(1).double()
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
        return cls(x.mean(0), cov + ridge * torch.eye(x.shape[1], dtype=x.dtype))

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        z = torch.randn(n, self.mean.numel(), generator=rng, dtype=torch.float64, device=rng.device)
        return (self.mean + z @ self.scale_tril.T).float()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        d = x.flatten(1).double() - self.mean
        z = torch.linalg.solve_triangular(self.scale_tril, d.T, upper=False)
        return (0.5 * z.square().sum(0) + self.log_norm).to(x.dtype)


def reference_std_field(doc: str = "add ‖x‖²/(2σ²), a Gaussian reference (unset: none)") -> Any:
    """An energy's ``reference_std`` key: σ of a Gaussian reference term ‖x‖²/(2σ²), or None."""
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": doc})


def reference_fit_field() -> Any:
    """An energy's ``reference_fit`` key: the ridge of a :class:`GaussianBase` fitted to the
    training set whose energy the model adds (None: no reference)."""
    return attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
        metadata={"doc": "add −log N(x; μ̂, Σ̂ + v·I) of a Gaussian fitted to the training set, v the "
                         "value given (Δ²/12 for data dequantised across bins of width Δ): the energy "
                         "starts as that Gaussian and learns what it misses"})


def fitted_reference(ridge: float | None, ctx: Any, who: str) -> GaussianBase | None:
    """The energy term of ``reference_fit``: the Gaussian fitted to the training set of the
    build context ``ctx``'s data (required by ``who``), normalised, so that AIS from the same
    Gaussian has a short path; None without one."""
    if ridge is None:
        return None
    return GaussianBase.fit(ctx.require("data", who).dataset().x, ridge=ridge or 1e-6)


class UniformBase(nn.Module):
    """The uniform distribution on a box [low, high]^D as an AIS base: energy D·log(high − low)
    inside, +∞ outside (a gradient kernel rejects every move out of the box)."""

    def __init__(self, low: Tensor, high: Tensor):
        super().__init__()
        if not bool((low < high).all()):
            raise ValueError("UniformBase: every low must be below its high")
        self.register_buffer("low", low.flatten().double())
        self.register_buffer("high", high.flatten().double())
        self.log_volume = float((self.high - self.low).log().sum())

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        u = torch.rand(n, self.low.numel(), generator=rng, dtype=torch.float64, device=rng.device)
        return (self.low + u * (self.high - self.low)).float()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        flat = x.flatten(1)
        inside = ((flat >= self.low) & (flat <= self.high)).all(1)
        # x·0 keeps the energy a function of x, so a kernel can differentiate it (∇ = 0)
        e = flat.sum(1) * 0 + self.log_volume
        return torch.where(inside, e, math.inf)


class BernoulliBase(nn.Module):
    """Independent Bernoulli units on {0, 1}^D as an AIS base and a yardstick of binary data:
    ``sample`` and the energy −log P(x) (normalised: a probability mass)."""

    def __init__(self, logits: Tensor):
        super().__init__()
        self.register_buffer("logits", logits.flatten().double())

    @classmethod
    def fit(cls, x: Tensor, pseudo_count: float = 1.0) -> BernoulliBase:
        """The units' frequencies in the rows of binary ``x``, each count smoothed by
        ``pseudo_count`` (a unit constant in training keeps a finite log-probability)."""
        x = x.flatten(1).double()
        p = (x.sum(0) + pseudo_count) / (len(x) + 2 * pseudo_count)
        return cls(p.log() - (-p).log1p())

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        u = torch.rand(n, self.logits.numel(), generator=rng, dtype=torch.float64, device=rng.device)
        return (u < self.logits.sigmoid()).float()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        flat = x.flatten(1).double()
        return (torch.nn.functional.softplus(self.logits).sum() - flat @ self.logits).to(x.dtype)


Base = GaussianBase | UniformBase


class _Path(nn.Module):
    """E_β = (1 − β)·E₀ + β·E: the geometric path from the base to the target."""

    def __init__(self, energy: nn.Module, base: Base, beta: float):
        super().__init__()
        self.energy, self.base, self.beta = energy, base, beta

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.beta == 1:  # the target alone: 0·E₀ would be NaN outside a uniform base's box
            return self.energy(x, cond)
        return (1 - self.beta) * self.base(x, cond) + self.beta * self.energy(x, cond)



@attrs.frozen
class Estimate:
    """An AIS estimate: log Ẑ, each chain's log weight, the weights' effective sample size
    (Σw)²/Σw² (of the chains; a few dominant weights mean the path was too short), and where
    the chains ended (forward: near-samples of the target; reverse: of the base)."""

    log_z: float
    log_weights: Tensor
    ess: float
    final: Tensor

    @classmethod
    def from_log_weights(cls, log_w: Tensor, final: Tensor, sign: float = 1.0) -> Estimate:
        """log Ẑ = sign · log mean w of the chains' log weights ``log_w``."""
        log_mean = float(torch.logsumexp(log_w, 0) - math.log(len(log_w)))
        ess = float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))
        return cls(sign * log_mean, log_w, ess, final)

    @property
    def std_error(self) -> float:
        """Standard error of log Ẑ over the chains (each an independent AIS run), by the delta
        method: sd(w)/(√n·mean w) = √((n/ESS − 1)/n)."""
        n = len(self.log_weights)
        return math.sqrt(max(n / self.ess - 1, 0.0) / n)


class PartitionEstimator(abc.ABC):
    """An energy that estimates its own log Z, better than generic AIS can (by enumeration,
    or along a path its structure makes cheap: an RBM's). The ``loglik`` task checks for
    it and then uses :meth:`log_partition` instead of its own path and kernel."""

    #: exp(−E) is a probability mass on binary vectors {0, 1}^D, not a density: held-out data
    #: are scored as they are, beside yardsticks that are masses too
    binary: ClassVar[bool] = False

    @abc.abstractmethod
    def log_partition(self, train: Tensor, *, chains: int, betas: int,
                      rng: torch.Generator) -> dict[str, float | Estimate]:
        """Estimates of log Z by name (``"exact"``, ``"ais"``…): a number, or an
        :class:`Estimate` of ``chains`` AIS chains along ``betas`` intermediate distributions;
        ``train`` is the training set (for a base fitted to it)."""


def dequantised(x: Tensor, bin_width: float, rng: torch.Generator) -> Tensor:
    """``x`` plus uniform noise across bins of ``bin_width`` (0: ``x`` itself): quantised data
    (17 grey levels) made a density's, so that log p of the noise-filled bins bounds log P."""
    if not bin_width:
        return x
    u = torch.rand(x.shape, generator=rng, device=rng.device).to(x.device)
    return x + bin_width * (u - 0.5)


class Referenced(abc.ABC):
    """An energy E = E₀ + g that tilts a normalised, samplable reference p₀ = exp(−E₀) (a
    trained flow): exp(−E)/Z = p₀·exp(−g)/Z. Declares the reference (an AIS base: ``sample``
    and its normalised energy), so that AIS can start from it (its path then anneals only
    the tilt g) and objectives can draw proposals from it; and the tilt g = E − E₀ alone,
    cheaper than subtracting the two."""

    @property
    @abc.abstractmethod
    def reference(self) -> nn.Module:
        """p₀ on flat vectors: ``sample(n, *, rng)`` → (n, D), ``forward(x)`` → −log p₀(x)."""

    @abc.abstractmethod
    def tilt(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """g(x) = E(x) − E₀(x), one per example."""


def geometric_betas(n: int, *, power: float = 4.0) -> list[float]:
    """``n + 1`` inverse temperatures from 0 to 1, dense near 0 (β = (t/n)^power), where the
    distributions change fastest."""
    return [(t / n) ** power for t in range(n + 1)]


def _path_step(sampler: Sampler, x: Tensor, energy: nn.Module, base: Base, beta: float,
               steps: int, rng: torch.Generator) -> Tensor:
    return sampler.run(x, _Path(energy, base, beta), steps, rng=rng)


def _gap(energy: nn.Module, base: Base, x: Tensor) -> Tensor:
    """E(x) − E₀(x), in float64 for the sums."""
    with torch.no_grad():
        return energy(x).double() - base(x).double()


def ais(energy: nn.Module, base: Base, sampler: Sampler, *, n_chains: int,
        betas: Sequence[float], steps: int = 1, rng: torch.Generator) -> Estimate:
    """log Z of exp(−E) by forward AIS from ``base`` (below the truth on average): ``n_chains``
    chains, ``steps`` of ``sampler`` at each β of ``betas`` (0 … 1)."""
    _check_betas(betas)
    x = base.sample(n_chains, rng=rng)
    log_w = torch.zeros(n_chains, dtype=torch.float64)
    for previous, beta in zip(betas, betas[1:]):
        log_w -= (beta - previous) * _gap(energy, base, x)
        x = _path_step(sampler, x, energy, base, beta, steps, rng)
    return Estimate.from_log_weights(log_w, x)


def reverse_ais(energy: nn.Module, base: Base, sampler: Sampler, samples: Tensor, *,
                betas: Sequence[float], steps: int = 1, rng: torch.Generator) -> Estimate:
    """log Z of exp(−E) by reverse AIS from ``samples`` of exp(−E)/Z (above the truth on
    average, if they are exact): the path of :func:`ais` walked from β = 1 to 0."""
    _check_betas(betas)
    x = samples
    log_w = torch.zeros(len(x), dtype=torch.float64)
    down = list(reversed(betas))
    for beta, below in zip(down, down[1:]):
        log_w += (beta - below) * _gap(energy, base, x)
        x = _path_step(sampler, x, energy, base, below, steps, rng)
    return Estimate.from_log_weights(log_w, x, -1.0)


def _check_betas(betas: Sequence[float]) -> None:
    if len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or any(b >= a for a, b in zip(betas[1:], betas)):
        raise ValueError("betas must increase from 0 to 1")
