"""Known answers on a 2-D Gaussian N(μ, Σ), 10⁵ samples: a quadratic energy
E(x) = ½(x − μ̂)ᵀP(x − μ̂) (P = LLᵀ) trained by the objective, full batch, by L-BFGS.
Sliced score matching recovers μ and Σ; DSM at σ = 0.1 recovers μ and Σ + σ²I (the data
smoothed by the noise), each within 2 % (relative Frobenius)."""

import pytest
import torch
from ebm_langevin import Langevin
from ebm_mle import UniformNoise
from ebm_score import NCSN, DenoisingScoreMatching, SlicedScoreMatching, sigmas
from torch import nn

from ebmcore import Batch, Condition, Energy

MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)


class Quadratic(Energy):
    """½(x − μ)ᵀLLᵀ(x − μ), L lower triangular with a positive diagonal; one (μ, L) per level
    where ``levels`` is given (then conditioned on the level)."""

    def __init__(self, levels: int | None = None):
        super().__init__()
        k = levels or 1
        self.condition = Condition.NONE if levels is None else Condition.LEVEL
        self.mu = nn.Parameter(torch.zeros(k, 2, dtype=torch.float64))
        self.raw = nn.Parameter(torch.zeros(k, 2, 2, dtype=torch.float64))

    def factor(self) -> torch.Tensor:
        return torch.tril(self.raw, -1) + torch.diag_embed(self.raw.diagonal(dim1=1, dim2=2).exp())

    def precision(self) -> torch.Tensor:
        f = self.factor()
        return f @ f.transpose(1, 2)

    def forward(self, x, cond=None):
        f = self.factor()
        d = torch.einsum("bi,kij->bkj", x, f) - torch.einsum("ki,kij->kj", self.mu, f)  # (x − μ_k)ᵀL_k, every k
        e = 0.5 * d.pow(2).sum(2)
        return e[:, 0] if cond is None else e.gather(1, cond.view(-1, 1))[:, 0]


def _data(n=100_000, seed=0):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MU + z @ torch.linalg.cholesky(SIGMA).T


def _fit(objective, x, seed=1):
    """Full-batch L-BFGS; the same rng seed in every closure call, so the noise is fixed."""
    params = list(objective.energy.parameters())
    opt = torch.optim.LBFGS(params, lr=1, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        losses, _ = objective.loss(Batch(x), rng=torch.Generator().manual_seed(seed))
        losses["energy"].backward()
        return losses["energy"]

    opt.step(closure)


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def _parts(energy):
    return energy, Langevin(), UniformNoise((2,), low=-3.0, high=3.0)


@pytest.mark.parametrize(("projection", "variance_reduced"),
                         [("rademacher", True), ("gaussian", True), ("rademacher", False)])
def test_ssm_recovers_the_gaussians_mean_and_covariance(projection, variance_reduced):
    energy = Quadratic()
    objective = SlicedScoreMatching(*_parts(energy), projection=projection, variance_reduced=variance_reduced)
    _fit(objective, _data())
    mean, cov = energy.mu[0].detach(), torch.linalg.inv(energy.precision()[0].detach())
    assert _rel(mean, MU) < 0.02 and _rel(cov, SIGMA) < 0.02, (mean, cov)


def test_dsm_at_sigma_0_1_recovers_the_mean_and_the_covariance_plus_sigma_squared():
    # antithetic noise: with one draw per example the term ε·(x − μ)ᵀ/σ leaves an error of
    # about 1/(σ·√n) = 3 % per entry (measured: 6.0 % relative Frobenius on the covariance)
    energy = Quadratic()
    _fit(DenoisingScoreMatching(*_parts(energy), sigma=0.1, antithetic=True), _data())
    mean, cov = energy.mu[0].detach(), torch.linalg.inv(energy.precision()[0].detach())
    smoothed = SIGMA + 0.01 * torch.eye(2, dtype=torch.float64)
    assert _rel(mean, MU) < 0.02 and _rel(cov, smoothed) < 0.02, (mean, cov)
    assert _rel(cov, SIGMA) > 0.01  # the σ²I is really there, not within the tolerance


def test_ncsn_learns_every_level_as_the_data_smoothed_by_its_noise():
    # 3 levels from σ = 1 down to 0.1; each of 30,000 examples trains one random level, so
    # about 10,000 per level: 5 %
    energy = Quadratic(levels=3)
    _fit(NCSN(*_parts(energy), sigma_max=1.0, sigma_min=0.1, levels=3, antithetic=True), _data(30_000))
    for k, s in enumerate(sigmas(1.0, 0.1, 3)):
        cov = torch.linalg.inv(energy.precision()[k].detach())
        assert _rel(energy.mu[k].detach(), MU) < 0.05
        assert _rel(cov, SIGMA + s**2 * torch.eye(2, dtype=torch.float64)) < 0.05, (k, cov)
