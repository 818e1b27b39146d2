"""The loglik task against exact answers: the true eight-Gaussians density (log Z by
quadrature, forward AIS below it and reverse AIS above, within noise), and an energy that
is the fitted Gaussian itself (log Z = 0 exactly, so its scores are the yardstick's)."""

import math

import pytest
import torch
from ebm_likelihood import LogLik, LogLikConfig
from ebm_toy.data import ToyData

from ebmcore import BuildContext, EbmError
from ebmcore.kit.conformance import MixtureEnergy
from ebmcore.kit.likelihood import GaussianBase


def _eight_gaussians() -> MixtureEnergy:
    """The data's own distribution (ebm-toy: radius 2, std 0.02), up to the 2π the kit's
    mixture energy leaves out (its log Z is log 2π)."""
    angles = torch.arange(8) * math.pi / 4
    means = 2 * torch.stack([angles.cos(), angles.sin()], 1)
    return MixtureEnergy(torch.full((8,), 1 / 8), means, torch.full((8,), 0.02))


def _task(energy, data, **settings) -> LogLik:
    ctx = BuildContext(event_shape=data.event_shape, built={"energy": energy, "data": data})
    return LogLik.from_config(LogLikConfig(**settings), ctx)


@pytest.fixture(scope="module")
def toy():
    return ToyData("eight_gaussians", n_train=4000, n_test=1000)


def test_bracketed_by_forward_and_reverse_ais_around_quadrature(toy, tmp_path, one_thread):
    task = _task(_eight_gaussians(), toy, chains=512, betas=1000, quadrature=(-3.0, 3.0), grid=1200,
                 settle_steps=20, kernel_options={"step_size": 0.01, "n_leapfrog": 5, "n_steps": 1})
    m = task.run(None, toy, rng=torch.Generator().manual_seed(0), out=tmp_path)
    quad = m["log_z/quadrature"]
    assert quad == pytest.approx(math.log(2 * math.pi), abs=1e-3)  # the grid resolves the modes
    # the true density scores ≈ 2.91 nats per point (its entropy)
    assert m["nats/quadrature"] == pytest.approx(2.91, abs=0.05)
    # forward AIS from below (measured −0.05 here); reverse AIS from above, noisier: its few
    # hundred resampled starting points hold ESS ≈ 10–20, and it came out +0.03 and +0.19 on
    # two data draws
    assert quad - 0.1 < m["log_z/ais"] < quad + 0.02
    assert quad - 0.02 < m["log_z/raise"] < quad + 0.25
    assert m["nats/raise"] <= m["nats/quadrature"] + 0.02 <= m["nats/ais"] + 0.04
    # the yardsticks are far below: one Gaussian, and uniform noise on the data's box
    assert m["nats/gaussian"] < 0 and m["nats/uniform"] < 0
    assert (tmp_path / "ais.png").stat().st_size > 0


def test_an_energy_equal_to_its_base_has_log_z_zero_and_the_yardsticks_bits(tmp_path):
    """E = −log N(μ̂, Σ̂) of the dequantised training set: every AIS weight is 0, so the
    scores must equal the fitted-Gaussian yardstick's, in nats and in bits per dimension."""

    class Quantised(ToyData):  # 2-D points on a grid of bin width 0.25
        def __init__(self):
            super().__init__("two_moons", n_train=3000, n_test=500)
            self.train = (self.train / 0.25).round() * 0.25
            self.test = (self.test / 0.25).round() * 0.25

    data = Quantised()
    rng = torch.Generator().manual_seed(1)
    # the task dequantises with its rng's first draws: fit the energy to the same draws
    train = data.dataset().x
    train = train + 0.25 * (torch.rand(train.shape, generator=rng) - 0.5)
    energy = GaussianBase.fit(train, ridge=1e-6).float()
    task = _task(energy, data, chains=64, betas=10, bin_width=0.25, reverse=False,
                 kernel_options={"step_size": 0.1, "n_steps": 1})
    m = task.run(None, data, rng=torch.Generator().manual_seed(1), out=tmp_path)
    assert m["log_z/ais"] == pytest.approx(0.0, abs=1e-6)
    assert m["nats/ais"] == pytest.approx(m["nats/gaussian"], abs=1e-4)
    assert m["bits_per_dim/ais"] == pytest.approx(m["bits_per_dim/gaussian"], abs=1e-4)
    # bits per dimension of the discrete points: −(nats + D·log Δ)/(D·ln 2)
    assert m["bits_per_dim/ais"] == pytest.approx(-(m["nats/ais"] + 2 * math.log(0.25)) / (2 * math.log(2)))


def test_bad_settings_are_named(toy):
    with pytest.raises(EbmError, match="nope"):
        _task(_eight_gaussians(), toy, kernel="nope")
    with pytest.raises(EbmError, match=r"kernel_options \(kernel 'hmc'\)\.step_sise"):
        _task(_eight_gaussians(), toy, kernel_options={"step_sise": 0.1})
    with pytest.raises(EbmError, match="quadrature needs 2-D"):
        _task(_eight_gaussians(), toy, kernel_options={"n_steps": 1})._quadrature(3)
    with pytest.raises(ValueError, match="low < high"):
        LogLikConfig(quadrature=(1.0, -1.0))
