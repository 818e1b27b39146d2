import math

import pytest
import torch
from ebm_langevin import Langevin
from ebm_nce import GaussianNoise, NoiseContrastive
from ebm_nce.objectives import contrast
from torch import nn

from ebmcore import Batch, BuildContext, Energy, RecipeError, build


class GaussianEnergy(Energy):
    """E(x) = Σ (x − μ)²/(2σ²) with learnable μ and log σ: the answer is known."""

    def __init__(self, dim=2):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(dim))

    def forward(self, x, cond=None):
        return ((x - self.mu) / self.log_sigma.exp()).pow(2).sum(1) / 2


MEAN, STD = torch.tensor([1.5, -1.0]), torch.tensor([0.6, 0.3])


def _train(objective, data, steps, lr=0.02, seed=0):
    rng = torch.Generator().manual_seed(seed)
    params = list(objective.param_groups()["energy"].parameters())
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        batch = Batch(data[torch.randint(0, len(data), (512,), generator=rng)])
        losses, metrics = objective.loss(batch, rng=rng)
        opt.zero_grad()
        losses["energy"].backward()
        opt.step()
    return metrics


def test_nce_recovers_mean_scale_and_the_normalising_constant():
    data = MEAN + STD * torch.randn(20000, 2, generator=torch.Generator().manual_seed(1))
    energy = GaussianEnergy()
    noise = GaussianNoise.isotropic((2,), mean=0.0, std=2.0)  # far from the data: a hard start
    objective = NoiseContrastive(energy, Langevin(), noise, noise_ratio=4)
    metrics = _train(objective, data, 1500)
    sigma = energy.log_sigma.exp().detach()
    # the sample's own mean and std are what any estimator can recover from 20,000 points
    assert torch.allclose(energy.mu.detach(), data.mean(0), atol=0.03), energy.mu
    assert torch.allclose(sigma, data.std(0), rtol=0.05), sigma
    # c = log ∫exp(−E) = Σ log(σ√(2π)): only a self-normalised model gets this right
    log_z = torch.log(sigma * math.sqrt(2 * math.pi)).sum().item()
    assert objective.model.log_z.item() == pytest.approx(log_z, abs=0.05)
    assert objective.model.log_z.item() == pytest.approx(torch.log(STD * math.sqrt(2 * math.pi)).sum().item(),
                                                          abs=0.08)
    assert {"loss/nce", "nce/accuracy", "nce/log_z", "energy/data", "energy/noise"} <= set(metrics)
    assert all(v.dim() == 0 for v in metrics.values())


def test_the_classifier_loss_is_the_cross_entropy_of_both_classes():
    # h = log p − log q − log ν: at h = 0 everywhere the cross-entropy is log 2 and half is right
    bce, acc = contrast(torch.full((4,), math.log(3)), torch.full((12,), math.log(3)), 3)
    assert bce.item() == pytest.approx(math.log(2)) and acc.item() == 0.0
    bce, acc = contrast(torch.tensor([5.0, 5.0]), torch.tensor([-5.0, 5.0]), 1)
    assert acc.item() == pytest.approx(0.75)
    assert bce.item() == pytest.approx((3 * math.log1p(math.exp(-5)) + math.log1p(math.exp(5))) / 4)


def test_fitted_noise_has_the_training_sets_moments_and_an_exact_log_density():
    rng = torch.Generator().manual_seed(0)
    chol = torch.tensor([[1.0, 0.0], [0.8, 0.5]])
    x = torch.tensor([0.5, -2.0]) + torch.randn(50000, 2, generator=rng) @ chol.T
    noise = GaussianNoise.fit(x, min_std=0.01)
    y = noise.sample(50000, rng=rng)
    assert torch.allclose(y.mean(0), x.mean(0), atol=0.03)
    assert torch.allclose(torch.cov(y.T), torch.cov(x.T), atol=0.03)
    reference = torch.distributions.MultivariateNormal(noise.mean, scale_tril=noise.scale_tril)
    assert torch.allclose(noise.log_prob(y[:100]), reference.log_prob(y[:100]), atol=1e-4)


def test_samples_are_langevin_chains_started_from_the_noise():
    energy = GaussianEnergy()
    noise = GaussianNoise.isotropic((2,), mean=5.0, std=0.1)
    no_move = NoiseContrastive(energy, Langevin(step_size=1e-8, n_steps=1, noise=0.0), noise)
    start = no_move.sample(500, rng=torch.Generator().manual_seed(0))
    assert start.mean().item() == pytest.approx(5.0, abs=0.02)
    # 400 exact-ish ULA steps under E = ‖x‖²/2 forget the start and reach N(0, I)
    mixing = NoiseContrastive(energy, Langevin(step_size=0.05, n_steps=400), noise, sample_steps=400)
    x = mixing.sample(4000, rng=torch.Generator().manual_seed(0))
    assert x.mean(0).abs().max() < 0.1 and x.std(0).sub(1).abs().max() < 0.1


def _ctx():
    ctx = BuildContext(event_shape=(2,))
    ctx.built["data"] = build("data", "toy2d", batch_size=16, n_train=200, n_test=50)
    ctx.built["energy"] = ctx.build("energy", "mlp", hidden=[8])
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=2)
    return ctx


def test_built_from_a_recipe_section_with_a_fitted_or_given_noise():
    ctx = _ctx()
    fitted = ctx.build("objective", "nce")
    train = ctx.built["data"].dataset().x
    assert torch.allclose(fitted.noise.mean, train.mean(0))
    given = ctx.build("objective", "nce", noise="gaussian", noise_std=3.0, noise_ratio=2)
    assert torch.equal(given.noise.scale_tril, 3.0 * torch.eye(2)) and given.noise_ratio == 2
    assert set(given.param_groups()) == {"energy"}
    assert "log_z" in dict(given.param_groups()["energy"].named_parameters())


@pytest.mark.parametrize("config, key, message", [
    ({"noise": "gaussian"}, "noise_std", "noise = 'gaussian' needs noise_std"),
    ({"noise_std": 1.0}, "noise_std", "is used only with noise = 'gaussian'"),
    ({"noise_mean": 1.0}, "noise_mean", "is used only with noise = 'gaussian'"),
    ({"noise": "gaussian", "noise_std": -1.0}, "noise_std", "must be > 0"),
    ({"noise": "uniform"}, "noise", "must be one of 'gaussian_fit', 'gaussian'"),
    ({"noise_ratio": 0}, "noise_ratio", "must be > 0"),
])
def test_bad_config_names_the_key(config, key, message):
    with pytest.raises(RecipeError) as info:
        _ctx().build("objective", "nce", **config)
    assert f"$.objective.{key}" in str(info.value) and message in str(info.value)
