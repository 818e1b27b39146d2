"""The pieces of EBGAN, BEGAN and MAGAN against hand computations, and what they refuse."""

import math

import pytest
import torch
from ebm_ebgan import BEGAN, EBGAN, MAGAN, AutoencoderEnergy, pull_away
from torch import nn

from ebmcore import Batch, BuildContext, EbmError, Energy, Generator, LatentGenerator

SHAPE = (1, 8, 8)


class LinearGenerator(LatentGenerator):
    """The smallest trainable generator: x = Wz + b."""

    def __init__(self, latent_dim: int = 3):
        super().__init__()
        self.latent_dim, self.sigma = latent_dim, 0.3
        self.net = nn.Linear(latent_dim, math.prod(SHAPE))

    def latent(self, n, rng):
        return torch.randn((n, self.latent_dim), generator=rng)

    def decode(self, z, cond=None):
        return self.net(z).view(len(z), *SHAPE)


class Noise(Generator):
    def sample(self, n, *, rng, cond=None, data=None):
        return torch.rand((n, *SHAPE), generator=rng)


class Quadratic(Energy):
    def forward(self, x, cond=None):
        return x.flatten(1).pow(2).sum(1)


def _parts():
    torch.manual_seed(0)
    return AutoencoderEnergy(SHAPE, channels=2, code=3), LinearGenerator()


def _batch(n=6):
    return Batch(torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(1)) * 2 - 1)


def test_pull_away_term_is_the_mean_squared_cosine_of_distinct_codes():
    # unit codes (1, 0), (1, 1)/√2, (0, 1): squared cosines 1/2, 0, 1/2 for the three pairs,
    # each counted twice over N(N − 1) = 6 ordered pairs: 2/6
    codes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert pull_away(codes).item() == pytest.approx(1 / 3)
    assert pull_away(3.0 * codes).item() == pytest.approx(1 / 3)  # lengths do not count
    assert pull_away(torch.tensor([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0]])).item() == pytest.approx(1.0)
    assert pull_away(torch.eye(4)).item() == pytest.approx(0.0)


def test_autoencoder_energy_is_the_mean_reconstruction_error_in_the_chosen_norm():
    energy, _ = _parts()
    x = _batch().x
    h = energy.encode(x)
    error = x - energy.decode(h)
    assert h.shape == (6, 3)
    assert torch.allclose(energy(x), error.pow(2).mean((1, 2, 3)))
    energy.norm = "l1"
    assert torch.allclose(energy(x), error.abs().mean((1, 2, 3)))
    with pytest.raises(EbmError, match="multiples of 4"):
        AutoencoderEnergy((1, 6, 6))


def test_ebgan_losses_are_the_hinge_and_the_pull_away_term():
    energy, generator = _parts()
    objective = EBGAN(energy, generator, margin=0.7, pt_weight=0.1)
    x = _batch().x
    losses, metrics = objective.loss(Batch(x), rng=torch.Generator().manual_seed(2))
    fake = generator.decode(generator.latent(6, torch.Generator().manual_seed(2)))
    e_real, e_fake = energy(x), energy(fake)
    assert losses["energy"].item() == pytest.approx((e_real.mean() + (0.7 - e_fake).clamp_min(0).mean()).item())
    pt = pull_away(energy.encode(fake))
    assert metrics["ebgan/pull_away"].item() == pytest.approx(pt.item())
    assert losses["generator"].item() == pytest.approx((e_fake.mean() + 0.1 * pt).item())
    assert all(v.dim() == 0 for v in metrics.values())


def test_began_k_moves_by_lambda_times_the_balance_and_stays_in_0_1():
    energy, generator = _parts()
    objective = BEGAN(energy, generator, gamma=0.5, lambda_k=0.1, k_init=0.2)
    objective.update_k(torch.tensor(1.0))
    assert objective.k.item() == pytest.approx(0.3)
    objective.update_k(torch.tensor(-0.5))
    assert objective.k.item() == pytest.approx(0.25)
    objective.update_k(torch.tensor(100.0))
    assert objective.k.item() == 1.0
    objective.update_k(torch.tensor(-100.0))
    assert objective.k.item() == 0.0


def test_began_step_uses_k_t_and_leaves_k_t_plus_1_with_the_convergence_measure():
    energy, generator = _parts()
    objective = BEGAN(energy, generator, gamma=0.5, lambda_k=0.1, k_init=0.2)
    losses, metrics = objective.loss(_batch(), rng=torch.Generator().manual_seed(2))
    l_x, l_g = metrics["energy/data"].item(), metrics["energy/sample"].item()
    assert metrics["began/k"].item() == pytest.approx(0.2)
    assert losses["energy"].item() == pytest.approx(l_x - 0.2 * l_g)
    assert losses["generator"].item() == pytest.approx(l_g)
    assert objective.k.item() == pytest.approx(min(max(0.2 + 0.1 * (0.5 * l_x - l_g), 0), 1))
    assert metrics["began/convergence"].item() == pytest.approx(l_x + abs(0.5 * l_x - l_g))
    losses["energy"].backward()  # the buffer's update did not touch the saved k


def _magan_epochs(objective, epochs):
    """Feed (e_real, e_fake) pairs one step each; the margin after every step."""
    out = []
    for e_real, e_fake in epochs:
        objective.end_of_step(torch.tensor([e_real, e_real]), torch.tensor([e_fake, e_fake]))
        out.append(round(objective.margin.item(), 6))
    return out


def test_magan_sets_the_margin_after_the_warmup_and_lowers_it_only_when_the_papers_conditions_hold():
    energy, generator = _parts()
    objective = MAGAN(energy, generator, warmup_steps=3, epoch_steps=2)
    margins = _magan_epochs(objective, [
        (9.0, 0.0), (9.0, 0.0),  # a warm-up epoch (its sums are dropped)
        (1.0, 0.0),              # the warm-up's last epoch: m = 1.0
        (0.5, 0.7), (0.5, 0.7),  # below m, below the samples, but no previous epoch (S_fake_prev = ∞): kept
        (0.4, 0.8), (0.4, 0.8),  # below m and the samples, samples' energy up: m = 0.4
        (0.3, 0.6), (0.3, 0.6),  # samples' energy came down: kept
        (0.2, 0.1), (0.2, 1.5),  # real sum 0.8 < fake sum 3.2, up from 2.4: m = mean real 0.2
        (0.1, 0.0), (0.1, 0.0),  # real above fake: kept
        (0.5, 2.0), (0.5, 2.0),  # real above m: kept
    ])
    assert margins == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert objective.step.item() == 15


def test_magan_trains_only_the_autoencoder_during_the_warmup():
    energy, generator = _parts()
    objective = MAGAN(energy, generator, warmup_steps=2, epoch_steps=1)
    rng = torch.Generator().manual_seed(3)
    for _ in range(2):
        losses, metrics = objective.loss(_batch(), rng=rng)
        assert losses["generator"].item() == 0.0
        assert losses["energy"].item() == pytest.approx(metrics["energy/data"].item())
    assert objective.margin.item() == pytest.approx(metrics["energy/data"].item())
    again = torch.Generator().set_state(rng.get_state())
    losses, metrics = objective.loss(_batch(), rng=rng)
    e_fake = energy(generator.decode(generator.latent(6, again)))
    hinge = (metrics["magan/margin"] - e_fake).clamp_min(0).mean().item()
    assert losses["generator"].item() == pytest.approx(e_fake.mean().item())
    assert losses["energy"].item() == pytest.approx(metrics["energy/data"].item() + hinge)


@pytest.mark.parametrize("objective", [EBGAN, BEGAN, MAGAN])
def test_a_generator_without_a_latent_space_is_refused_by_name(objective):
    energy, _ = _parts()
    with pytest.raises(EbmError, match=f"objective '{objective.name}' needs a trainable generator .* got Noise"):
        objective(energy, Noise())


def test_ebgan_refuses_an_energy_without_an_encoder():
    with pytest.raises(EbmError, match="objective 'ebgan' needs energy 'autoencoder'.* got Quadratic"):
        EBGAN(Quadratic(), LinearGenerator())


def test_samples_are_the_generators_and_take_no_condition():
    energy, generator = _parts()
    objective = BEGAN(energy, generator)
    x = objective.sample(5, rng=torch.Generator().manual_seed(4))
    assert torch.equal(x, generator.sample(5, rng=torch.Generator().manual_seed(4)))
    with pytest.raises(EbmError, match="takes no condition"):
        objective.sample(5, rng=torch.Generator(), cond=torch.zeros(5))


def test_the_energy_builds_for_the_datas_image_shape():
    energy = BuildContext(event_shape=(3, 16, 12)).build("energy", "autoencoder", channels=4, code=5, norm="l1")
    assert energy(torch.zeros(2, 3, 16, 12)).shape == (2,) and energy.norm == "l1"
