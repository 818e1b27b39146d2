"""Block Gibbs sampling against exact distributions of RBMs small enough to enumerate, and
its refusals."""

import pytest
import torch
from ebm_rbm import BernoulliRBM, GaussianRBM, Gibbs
from ebm_rbm.partition import _states

from ebmcore import EbmError, RecipeError, build
from ebmcore.kit.conformance import MixtureEnergy


def _random(cls, d, h, seed=0):
    torch.manual_seed(seed)
    rbm = cls(d, h, init_std=1.0)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


def _chi2(x: torch.Tensor, exact: torch.Tensor) -> float:
    codes = (x.flatten(1).long() * (1 << torch.arange(x[0].numel()))).sum(1)  # the index in _states
    counts = torch.bincount(codes, minlength=len(exact)).double()
    return float(((counts - len(x) * exact) ** 2 / (len(x) * exact)).sum())


def test_visible_frequencies_match_the_exact_marginal_within_chi_square(one_thread):
    rbm = _random(BernoulliRBM, 4, 3)
    states = _states(4)
    with torch.no_grad():
        exact = torch.softmax(-rbm.free_energy(states.float()).double(), 0)
    n = 20_000
    x0 = torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(1)).round()
    x = Gibbs(n_steps=30).run(x0, rbm, rng=torch.Generator().manual_seed(2))
    assert x.shape == x0.shape and bool(((x == 0) | (x == 1)).all())
    assert _chi2(x, exact) < 37.7  # the 0.999 quantile of χ² with 15 degrees of freedom (measured: 14.4; a tilt of 0.1 nat on one unit gives 58)


def test_gaussian_rbm_samples_have_the_exact_mixture_moments(one_thread):
    rbm = _random(GaussianRBM, 2, 2)
    hidden = _states(2)
    with torch.no_grad():
        w, b, c = (t.double() for t in rbm.params())
        means = b + hidden @ w.T  # v | h ~ N(b + Wh, I)
        weights = torch.softmax(hidden @ c + rbm.log_normaliser(means), 0)
        mean = weights @ means
        second = torch.eye(2, dtype=torch.float64) + (weights[:, None, None] * means[:, :, None] * means[:, None]).sum(0)
    n = 20_000
    x = Gibbs(n_steps=30).run(torch.zeros(n, 2), rbm, rng=torch.Generator().manual_seed(3)).double()
    sd = (second.diagonal() - mean.square()).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * sd / n ** 0.5).all()  # 4 standard errors
    assert torch.allclose(x.T @ x / n, second, atol=0.1)


def test_parallel_tempering_around_gibbs_keeps_the_rbm_at_every_temperature(one_thread):
    # each replica at T samples the joint exp(−E(v, h)/T), whose marginal is exp(−F_β(v)), β = 1/T
    pytest.importorskip("ebm_tempering", reason="parallel_tempering comes from ebm-tempering")
    rbm = _random(BernoulliRBM, 4, 3)
    pt = build("sampler", "parallel_tempering", kernel="gibbs", temperatures=(1.0, 2.0, 5.0), n_steps=100,
               return_all=True)
    n = 12_000
    x = pt.run(torch.rand(3 * n, 4, generator=torch.Generator().manual_seed(1)).round(), rbm,
               rng=torch.Generator().manual_seed(2))
    states = _states(4).float()
    for k, t in enumerate(pt.ladder):
        with torch.no_grad():
            exact = torch.softmax(-rbm.free_energy(states, beta=torch.full((16, 1), 1 / t)).double(), 0)
        assert _chi2(x[k * n:(k + 1) * n], exact) < 37.7, t  # χ²₁₅ at 0.999 (measured 18.5, 7.2, 19.0)
    # and the hotter replicas are what they claim: flatter than T = 1 (a tilt the test would see)
    with torch.no_grad():
        cold = torch.softmax(-rbm.free_energy(states).double(), 0)
    assert _chi2(x[2 * n:], cold) > 200  # measured 2,900; exp(−F/T), the wrong family, gives 170–190


def test_a_gaussian_rbm_at_temperature_t_draws_its_visible_units_with_variance_t():
    rbm = _random(GaussianRBM, 3, 2)
    hot = rbm.tempered(torch.full((20_000,), 4.0))
    h = torch.zeros(20_000, 2)
    eta = rbm.visible_eta(h)
    v = rbm.sample_visible_from(eta, torch.Generator().manual_seed(0), hot.beta)
    assert torch.allclose(v.var(0), torch.full((3,), 4.0), rtol=0.05)
    assert torch.allclose(v.mean(0), rbm.visible_bias.detach(), atol=0.06)
    # at T = 1 the tempered free energy is the free energy
    v = torch.randn(5, 3)
    assert torch.allclose(rbm.tempered(torch.ones(5))(v), rbm(v))


def test_observed_units_are_kept_and_probabilities_are_the_last_conditional_mean():
    rbm = _random(BernoulliRBM, 6, 3)
    x0 = torch.rand(500, 6, generator=torch.Generator().manual_seed(0)).round()
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[:, :2] = True
    x = Gibbs(n_steps=5, probabilities=True).run(x0, rbm, rng=torch.Generator().manual_seed(1), mask=mask)
    assert torch.equal(x[:, :2], x0[:, :2])
    free = x[:, 2:]
    assert bool(((free > 0) & (free < 1)).all())  # probabilities, never a draw
    # the same chain's draws: the state carries them, the returned x is their conditional mean
    state = Gibbs(probabilities=True).init(x0, rbm, rng=torch.Generator())
    state, _ = Gibbs(probabilities=True).step(state, rbm, rng=torch.Generator().manual_seed(5))
    assert bool(((state.v == 0) | (state.v == 1)).all())


def test_an_energy_that_is_not_an_rbm_is_refused_by_name():
    mixture = MixtureEnergy(torch.ones(1), torch.zeros(1, 2), torch.ones(1))
    with pytest.raises(EbmError, match=r"sampler 'gibbs'.*BipartiteEnergy.*got MixtureEnergy"):
        Gibbs().run(torch.zeros(4, 2), mixture, rng=torch.Generator())


def test_config_errors_name_the_key():
    with pytest.raises(RecipeError, match=r"\$\.sampler\.n_steps: must be > 0"):
        build("sampler", "gibbs", n_steps=0)
    with pytest.raises(RecipeError, match=r"\$\.sampler\.temperature: unknown key"):
        build("sampler", "gibbs", temperature=2.0)
    with pytest.raises(RecipeError, match=r"\$\.sampler\.probabilities: expected a boolean"):
        build("sampler", "gibbs", probabilities=1)
