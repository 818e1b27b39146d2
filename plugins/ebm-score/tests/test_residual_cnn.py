"""The denoiser-residual energy: E(x, k) = ‖F(x, k)‖²/(2σ_k²) on the ladder it is given, its
ladder checked by objective 'ncsn', images only, and its score learns a denoiser."""

import pytest
import torch
from ebm_langevin import Langevin
from ebm_mle import UniformNoise
from ebm_score import NCSN, ResidualCNN, sigmas

from ebmcore import EbmError
from ebmcore.kit.losses import denoising_loss
from ebmcore.train import run_recipe

LADDER = {"sigma_max": 0.5, "sigma_min": 0.1, "levels": 3}


def test_the_energy_is_the_residual_over_twice_the_level_variance_and_level_0_without_one():
    energy = ResidualCNN(1, 4, **LADDER)
    x = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([0, 1, 2, 1, 0])
    sigma = sigmas(**LADDER)[levels]
    expected = energy.residual(x, levels).flatten(1).pow(2).sum(1) / (2 * sigma**2)
    torch.testing.assert_close(energy(x, levels), expected.float())
    torch.testing.assert_close(energy(x), energy(x, torch.zeros(5, dtype=torch.long)))
    # the level biases start at zero, so the residual is the same at every level: only 1/σ_k² differs
    top = torch.full((5,), 2)
    torch.testing.assert_close(energy(x, top) * 0.5**2, energy(x) * 0.1**2)


def test_ncsn_refuses_a_residual_energy_on_another_ladder():
    noise = UniformNoise((1, 6, 6), low=-1.0, high=1.0)
    with pytest.raises(EbmError, match=r"energy 'residual_cnn' must scale by .*\$.energy.sigma_min = 0.1 but "
                                       r"\$.objective.sigma_min = 0.05"):
        NCSN(ResidualCNN(1, 4, **LADDER), Langevin(), noise, sigma_max=0.5, sigma_min=0.05, levels=3)
    NCSN(ResidualCNN(1, 4, **LADDER), Langevin(), noise, **LADDER)  # the same ladder: fine


def test_the_energy_refuses_data_that_are_not_images(tmp_path):
    recipe = {"run": {"seed": 0, "steps": 1}, "data": {"type": "toy2d", "batch_size": 8},
              "energy": {"type": "residual_cnn"}, "sampler": {"type": "langevin"},
              "generator": {"type": "uniform"}, "objective": {"type": "ncsn"}}
    with pytest.raises(EbmError, match=r"\$.energy: .*residual_cnn' needs images"):
        run_recipe(recipe, out=str(tmp_path / "run"), progress=False)


def test_its_score_learns_to_denoise_a_point_mass():
    # data: one 6×6 image; the exact score at x̃ is (x₀ − x̃)/σ², which F(x) = x − x₀ gives
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((1, 1, 6, 6), generator=g) * 2 - 1
    energy = ResidualCNN(1, 8, sigma_max=0.5, sigma_min=0.1, levels=2)
    opt = torch.optim.Adam(energy.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        k = torch.randint(0, 2, (32,), generator=g)
        noise = torch.randn((32, 1, 6, 6), generator=g)
        return denoising_loss(energy, x0.expand(32, -1, -1, -1), energy.sigmas[k].view(-1, 1, 1, 1), noise, k)[0].mean()

    first = float(loss().detach())  # ½·E‖σ·s + ε‖² with s ≈ 0: about ½·36
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    last = sum(float(loss().detach()) for _ in range(5)) / 5
    assert first > 12 and last < 0.1 * first, (first, last)
