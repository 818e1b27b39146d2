import math

import pytest
import torch
from ebm_langevin import Langevin
from torch import nn

from ebmcore.kit.conformance import GaussianEnergy, check_gaussian_2d, check_rng_discipline


def test_langevin_samples_a_known_2d_gaussian():
    check_gaussian_2d(Langevin(step_size=0.01, n_steps=1500))


def test_langevin_with_too_large_a_step_fails_the_gaussian_check():
    # the check must be able to fail: a large step biases ULA's covariance far off
    with pytest.raises(AssertionError, match="does not sample"):
        check_gaussian_2d(Langevin(step_size=0.5, n_steps=300))


def test_default_noise_is_exact_ula():
    assert Langevin(step_size=0.02).noise == pytest.approx(math.sqrt(0.04))


class _Probe(nn.Module):
    """An energy that records whether it saw training mode and parameter gradients."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.seen = []

    def forward(self, x, cond=None):
        self.seen.append((self.training, self.w.requires_grad))
        return (x * self.w).pow(2).sum(1)


def test_sampling_is_in_eval_mode_without_parameter_grads_and_returns_detached():
    energy = _Probe().train()
    x0 = torch.randn(8, 2, requires_grad=True)
    x = Langevin(step_size=0.01, n_steps=5).run(x0, energy, rng=torch.Generator().manual_seed(0))
    assert energy.seen and all(s == (False, False) for s in energy.seen)
    assert energy.training and energy.w.requires_grad  # restored
    assert energy.w.grad is None
    assert not x.requires_grad and x.grad_fn is None


def test_one_energy_gradient_per_step():
    energy = _Probe()
    Langevin(step_size=0.01, n_steps=7).run(torch.zeros(4, 2), energy, rng=torch.Generator())
    assert len(energy.seen) == 7


def test_same_rng_seed_gives_same_chain_and_global_rng_untouched():
    check_rng_discipline(Langevin(step_size=0.1, n_steps=10))


def test_value_clamp_and_gradient_clamp():
    energy = GaussianEnergy(torch.full((2,), 100.0), torch.eye(2))  # pulls hard towards 100
    x = Langevin(step_size=1.0, n_steps=3, noise=0.0, clamp=(-1.0, 1.0)).run(
        torch.zeros(4, 2), energy, rng=torch.Generator())
    assert torch.equal(x, torch.ones(4, 2))
    # gradient clamped to 0.5 element-wise: three noise-free steps of size 1 move 1.5
    x = Langevin(step_size=1.0, n_steps=3, noise=0.0, grad_clamp=0.5).run(
        torch.zeros(4, 2), energy, rng=torch.Generator())
    assert torch.allclose(x, torch.full((4, 2), 1.5))


def test_temperature_scales_the_gradient_step():
    energy = GaussianEnergy(torch.full((2,), 10.0), torch.eye(2))
    x = Langevin(step_size=0.1, n_steps=1, noise=0.0, temperature=2.0).run(
        torch.zeros(1, 2), energy, rng=torch.Generator())
    assert torch.allclose(x, torch.full((1, 2), 0.5))  # 0.1 · 10 / 2


def test_mask_keeps_observed_coordinates_fixed():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x0 = torch.full((32, 2), 3.0)
    mask = torch.tensor([True, False])
    x = Langevin(step_size=0.05, n_steps=50).run(x0, energy, rng=torch.Generator(), mask=mask)
    assert torch.equal(x[:, 0], x0[:, 0])  # bit-identical
    assert (x[:, 1] - 3.0).abs().mean() > 1.0


@pytest.mark.parametrize("kwargs", [{"step_size": -0.1}, {"step_size": 0.0}, {"n_steps": 0},
                                    {"noise": -1.0}, {"clamp": (1.0, -1.0)}, {"grad_clamp": 0.0}])
def test_meaningless_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Langevin(**kwargs)
