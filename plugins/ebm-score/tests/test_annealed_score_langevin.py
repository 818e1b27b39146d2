"""The annealed Langevin kernel of NCSN on level energies whose smoothed scores are known,
and the contracts around it: level energies only, ladders that agree, masks, the rng."""

import pytest
import torch
from ebm_langevin import Langevin
from ebm_mle import UniformNoise
from ebm_score import NCSN, AnnealedScoreLangevin, DenoisingScoreMatching, sigmas
from ebm_toy.energies import MLPEnergy
from torch import nn

from ebmcore import Condition, EbmError, Energy

MU, TAU = torch.tensor([1.0, -2.0]), 0.3


class SmoothedGaussian(Energy):
    """N(μ, τ²I) smoothed by level k's noise: E(x, k) = ‖x − μ‖²/(2(τ² + σ_k²)), the exact
    noise-conditional model of Gaussian data."""

    condition = Condition.LEVEL

    def __init__(self, ladder):
        super().__init__()
        self.register_buffer("ladder", ladder.float())
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, cond=None):
        var = TAU**2 + self.ladder[torch.zeros(len(x), dtype=torch.long) if cond is None else cond] ** 2
        return self.w * (x - MU).pow(2).sum(1) / (2 * var)


def _sampler(**kw):
    settings = {"sigma_max": 3.0, "sigma_min": 0.1, "levels": 5, "steps_per_level": 100, "step_lr": 2e-3}
    return AnnealedScoreLangevin(**{**settings, **kw})


def _energy(s):
    c = s.config
    return SmoothedGaussian(sigmas(c.sigma_max, c.sigma_min, c.levels))


def test_chains_from_far_away_end_at_the_least_noisy_level_and_tweedie_sharpens_them():
    rng = torch.Generator().manual_seed(0)
    x0 = 5 * torch.rand(4000, 2, generator=rng) - 2.5 + torch.tensor([6.0, 6.0])  # nowhere near μ
    var = TAU**2 + 0.1**2
    raw = _sampler(denoise=False)
    x = raw.run(x0, _energy(raw), rng=rng)
    assert torch.allclose(x.mean(0), MU, atol=0.03) and x.var(0).mean().item() == pytest.approx(var, rel=0.1)
    # Tweedie: x + σ²·s(x) = μ + (x − μ)·τ²/(τ² + σ²), so the variance shrinks by (τ²/(τ² + σ²))²
    den = _sampler()
    y = den.run(x0, _energy(den), rng=torch.Generator().manual_seed(0))
    assert y.var(0).mean().item() == pytest.approx(var * (TAU**2 / var) ** 2, rel=0.1)


def test_levels_go_from_the_noisiest_down_then_one_noiseless_denoising_step():
    s = _sampler(levels=3, steps_per_level=2)
    assert s.n_steps == 7
    _, trace = s.run(torch.zeros(4, 2), _energy(s), rng=torch.Generator(), trace=True)
    ladder = sigmas(3.0, 0.1, 3).tolist()
    assert trace["sigma"].tolist() == pytest.approx([ladder[2]] * 2 + [ladder[1]] * 2 + [ladder[0]] * 3)


def test_mask_keeps_observed_coordinates_and_rng_is_the_only_randomness():
    s = _sampler(steps_per_level=10)
    x0 = torch.full((64, 2), 3.0)
    x = s.run(x0, _energy(s), rng=torch.Generator(), mask=torch.tensor([True, False]))
    assert torch.equal(x[:, 0], x0[:, 0]) and (x[:, 1] - 3.0).abs().mean() > 1.0
    before = torch.get_rng_state()
    a, b, c = (s.run(x0, _energy(s), rng=torch.Generator().manual_seed(k)) for k in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(before, torch.get_rng_state())


def test_an_energy_without_levels_or_a_cond_is_refused():
    s = _sampler(steps_per_level=1)
    with pytest.raises(EbmError, match="conditioned on the noise level.*MLPEnergy"):
        s.run(torch.zeros(2, 2), MLPEnergy(2, (8,)), rng=torch.Generator())
    with pytest.raises(EbmError, match="takes no cond"):
        s.run(torch.zeros(2, 2), _energy(s), rng=torch.Generator(), cond=torch.zeros(2, dtype=torch.long))


def test_n_steps_must_be_the_whole_schedule():
    with pytest.raises(ValueError, match="whole schedule"):
        _sampler(levels=3, steps_per_level=2, n_steps=6)
    assert _sampler(levels=3, steps_per_level=2, n_steps=7).n_steps == 7


def test_ncsn_refuses_an_energy_without_levels_and_a_ladder_the_sampler_does_not_share():
    noise = UniformNoise((2,), low=-3.0, high=3.0)
    with pytest.raises(EbmError, match=r"\$.energy.type = 'level_mlp'.*MLPEnergy.*'none'"):
        NCSN(MLPEnergy(2, (8,)), Langevin(), noise)
    s = _sampler()
    with pytest.raises(EbmError, match=r"\$.sampler.sigma_max = 3.0 but \$.objective.sigma_max = 1.0"):
        NCSN(_energy(s), s, noise, sigma_max=1.0, sigma_min=0.1, levels=5)
    NCSN(_energy(s), s, noise, sigma_max=3.0, sigma_min=0.1, levels=5)  # the same ladder: fine
    with pytest.raises(EbmError, match="use it with objective 'ncsn'"):
        DenoisingScoreMatching(MLPEnergy(2, (8,)), s, noise)


# compiled: the step counter is a tensor, so one graph serves every level (a compile: -m slow)
@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # no fallback to eager steps
def test_compiled_chains_equal_eager_ones():
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) + 3
    x = {}
    for c in (False, True):
        s = _sampler(levels=3, steps_per_level=5, compile=c)
        x[c] = s.run(x0, _energy(s), rng=torch.Generator().manual_seed(1))
    assert not torch.equal(x[False], x0) and torch.allclose(x[True], x[False], atol=1e-5)
