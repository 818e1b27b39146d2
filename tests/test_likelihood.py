"""log Z by annealed importance sampling (ebmcore.kit.likelihood), against exact answers:
a Gaussian's closed form and a 2-D energy's quadrature on a fine grid."""

import math

import pytest
import torch
from ebm_hmc import HMC
from torch import nn

from ebmcore.kit.conformance import GaussianEnergy, gaussian_10d_target
from ebmcore.kit.likelihood import GaussianBase, ais, geometric_betas, reverse_ais


@pytest.fixture
def gaussian_10d():
    mean, cov = gaussian_10d_target()
    log_z = 5 * math.log(2 * math.pi) + 0.5 * float(torch.logdet(cov.double()))
    return GaussianEnergy(mean, cov), log_z


def test_ais_finds_the_log_normaliser_of_a_10d_gaussian(gaussian_10d):
    energy, log_z = gaussian_10d
    base = GaussianBase(torch.zeros(10), 4 * torch.eye(10))  # off in mean (|μ| ≈ 3) and in scale
    found = ais(energy, base, HMC(step_size=0.3, n_leapfrog=5), n_chains=1000,
                betas=geometric_betas(400, power=2), rng=torch.Generator().manual_seed(0))
    assert abs(found.log_z - log_z) < 0.05 and found.ess > 500


def test_forward_ais_is_below_and_reverse_ais_above_on_a_short_path(gaussian_10d):
    """A 10-step path: the forward estimate is biased low, the reverse one (from exact
    samples) high, on average over repeats (one forward run may land above), and the truth
    lies between them."""
    energy, log_z = gaussian_10d
    base, sampler, betas = GaussianBase(torch.zeros(10), 4 * torch.eye(10)), HMC(step_size=0.3, n_leapfrog=5), \
        geometric_betas(10, power=2)
    forward = [ais(energy, base, sampler, n_chains=500, betas=betas, rng=torch.Generator().manual_seed(s)).log_z
               for s in range(8)]
    backward = [reverse_ais(energy, base, sampler, energy.sample(500, rng=torch.Generator().manual_seed(10 + s)),
                            betas=betas, rng=torch.Generator().manual_seed(s)).log_z for s in range(8)]
    mean_forward, mean_backward = sum(forward) / 8, sum(backward) / 8
    assert mean_forward < log_z - 0.02 and mean_backward > log_z + 0.02, (mean_forward, log_z, mean_backward)


class _Bumpy(nn.Module):
    """A non-Gaussian 2-D energy: a small random network on top of a quadratic bowl."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():  # fixed weights, and the global RNG left as it was
            torch.manual_seed(3)
            self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 1))

    def forward(self, x, cond=None):
        return 0.5 * x.square().sum(1) + 2 * self.net(x).squeeze(1)


def test_ais_agrees_with_quadrature_on_a_2d_energy():
    energy = _Bumpy()
    grid = torch.linspace(-8, 8, 801)
    xy = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        log_z = float(torch.logsumexp(-energy(xy).double(), 0) + 2 * math.log(grid[1] - grid[0]))
    found = ais(energy, GaussianBase(torch.zeros(2), 2 * torch.eye(2)), HMC(step_size=0.3, n_leapfrog=5),
                n_chains=2000, betas=geometric_betas(200, power=2), rng=torch.Generator().manual_seed(0))
    assert abs(found.log_z - log_z) < 0.05


def test_a_base_fitted_to_samples_is_their_gaussian_and_normalised():
    x = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5]) + 1
    base = GaussianBase.fit(x)
    torch.testing.assert_close(base.mean.float(), torch.ones(3), atol=0.05, rtol=0)
    grid = torch.linspace(-12, 14, 261)
    xyz = torch.cartesian_prod(grid, grid, grid)
    mass = torch.logsumexp(-base(xyz).double(), 0) + 3 * math.log(grid[1] - grid[0])
    assert abs(float(mass)) < 1e-3  # ∫ exp(−E₀) = 1


def test_betas_must_run_from_zero_to_one(gaussian_10d):
    energy, _ = gaussian_10d
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        ais(energy, GaussianBase(torch.zeros(10), torch.eye(10)), HMC(), n_chains=4, betas=[0, 0.5, 0.4, 1],
            rng=torch.Generator())
