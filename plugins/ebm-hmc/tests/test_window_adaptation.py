import math

import pytest
import torch
from ebm_hmc import HMC, NUTS, hmc_kernel, window_init, window_schedule, window_update
from torch import nn

from ebmcore import energy_and_grad
from ebmcore.kit.conformance import (
    ANISOTROPIC_COV,
    GaussianEnergy,
    check_anisotropic_gaussian,
    check_banana,
    check_gaussian_10d,
    moments,
    standardized_errors,
)


# one thread: two on this shared 2-core machine run these chains many times slower
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n, windows", [
    (1000, (75, (25, 50, 100, 200, 500), 50)),
    (500, (75, (25, 50, 100, 200), 50)),
    (180, (75, (25, 30), 50)),  # Stan stretches no first window; the second runs to the final buffer
    (150, (75, (25,), 50)),
    (100, (15, (75,), 10)),  # shorter than 75 + 25 + 50: 15 % / 75 % / 10 %
    (19, (19, (), 0)),  # no mass under 20 steps, as Stan
])
def test_the_windows_are_stans(n, windows):
    schedule = window_schedule(n)
    assert schedule == windows and schedule.init_buffer + sum(schedule.slow) + schedule.term_buffer == n


@pytest.mark.parametrize("pooled", [False, True], ids=["per chain", "pooled"])
def test_a_slow_window_ends_with_stans_regularised_variance_and_restarts_dual_averaging(pooled):
    """100 warm-up steps: positions of steps 15 … 89 estimate M⁻¹ = (n/(n + 5))·var + 10⁻³·5/(n + 5)
    at step 90 (n = 75 per chain, or 3·75 pooled), and dual averaging restarts from ε̄."""
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(100, 3, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.1], dtype=torch.float64) + 5
    state = window_init(0.1, 100)
    for t in range(90):
        acceptance = torch.rand((), generator=g) if pooled else torch.rand(3, generator=g)
        before = state.da
        state, inv_mass = window_update(state, xs[t], acceptance, 0.8, pooled=pooled)
        assert (inv_mass is None) == (t != 89)
    window = xs[15:90]
    if pooled:
        n, var = 3 * 75, window.reshape(-1, 2).var(0, keepdim=True)
    else:
        n, var = 75, window.var(0)
    torch.testing.assert_close(inv_mass, n / (n + 5) * var + 1e-3 * 5 / (n + 5))
    assert inv_mass.shape == ((1, 2) if pooled else (3, 2))
    # restarted at the average of the window's last update, with μ = log(10·ε̄)
    assert state.da.t == 0 and state.n == 0 and state.t == 90
    last = window_update(window_init(0.1, 100)._replace(da=before, t=10), xs[0], acceptance, 0.8, pooled=pooled)[0].da
    torch.testing.assert_close(state.da.log_step, last.log_step_avg)
    torch.testing.assert_close(state.da.mu, last.log_step_avg + math.log(10))


# one config per sampler for the three targets, from the default step size 0.1
_ADAPTED = {
    "hmc": lambda: HMC(n_steps=60, adapt_steps=40, adaptation="window", jitter=0.5),
    "nuts": lambda: NUTS(n_steps=50, adapt_steps=30, target_accept=0.9),  # 0.9: see test_nuts.py
}


@pytest.mark.parametrize("check", [check_anisotropic_gaussian, check_gaussian_10d, check_banana],
                         ids=["anisotropic", "10d", "banana"])
@pytest.mark.parametrize("sampler", list(_ADAPTED))
def test_window_adapted_samplers_pass_the_conformance_checks_from_the_default_step(sampler, check):
    check(_ADAPTED[sampler]())


@pytest.mark.parametrize("sampler", [
    HMC(n_steps=101, adapt_steps=100, adaptation="window", jitter=0.5),
    NUTS(n_steps=41, adapt_steps=40),
], ids=["hmc", "nuts"])
def test_the_inverse_mass_learnt_is_the_targets_marginal_variances(sampler):
    """On the anisotropic Gaussian (variances 1 and 0.01) from N(0, I) starts: pooled over
    500 chains, the one slow window (75 resp. 30 steps) gives diag(Σ) within 10 % (measured:
    HMC −1.2 % and −1.5 %, NUTS +5.9 % and +3.8 %: its window starts 6 steps in, with the
    starts' spread not quite gone)."""
    energy = GaussianEnergy(torch.zeros(2), ANISOTROPIC_COV)
    rng = torch.Generator().manual_seed(0)
    state = sampler.init(torch.randn(500, 2, generator=rng), energy, rng=rng)
    for _ in range(sampler.n_steps):
        state, _ = sampler.step(state, energy, rng=rng)
    assert state.adaptation is None and state.inv_mass.shape == (1, 2) and state.step_size.dim() == 0
    ratio = state.inv_mass[0] / ANISOTROPIC_COV.diagonal()
    assert ((ratio - 1).abs() < 0.1).all(), ratio


class _Scaled(nn.Module):
    """N(0, σ²I) with each chain's σ its condition: chains of one batch, different targets."""

    def forward(self, x, cond):
        return 0.5 * (x / cond).square().sum(1)


def test_per_chain_adaptation_fits_each_chain_to_its_own_target():
    """Chains whose targets' scales are 0.1, 1 and 10 each learn their own M⁻¹ (σ², to the
    noise of a 50-step window) and their own ε; pooled, all would get the widest's."""
    sigma = torch.tensor([0.1, 1.0, 10.0]).repeat_interleave(100)[:, None]
    energy = _Scaled()
    s = HMC(n_steps=201, adapt_steps=200, adaptation="window", adaptation_scope="per_chain", jitter=0.5)
    rng = torch.Generator().manual_seed(0)
    state = s.init(torch.randn(300, 2, generator=rng), energy, rng=rng, cond=sigma)
    for _ in range(s.n_steps):
        state, _ = s.step(state, energy, rng=rng, cond=sigma)
    assert state.inv_mass.shape == (300, 2) and state.step_size.shape == (300,)
    ratio = (state.inv_mass / sigma.square()).view(3, 100, 2).median(1).values
    assert ((ratio > 0.7) & (ratio < 1.3)).all(), ratio
    # in the units of its own scale every chain's ε is about the same
    eps = state.step_size.view(3, 100).median(1).values
    assert eps.max() / eps.min() < 1.5, eps


def test_per_chain_dual_averaging_gives_each_chain_its_step():
    s = HMC(step_size=0.3, n_steps=30, adapt_steps=20, adaptation_scope="per_chain")
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x = s.run(torch.randn(64, 2), energy, rng=torch.Generator().manual_seed(0), trace=True)[1]
    assert x["step_size"].shape == (30, 64) and (x["step_size"][21:] == x["step_size"][20]).all()
    assert x["step_size"][20].unique().numel() == 64


_MEAN, _COV = torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])


def test_hmc_with_a_step_and_a_diagonal_mass_per_chain_leaves_the_target_invariant():
    """From exact draws, three HMC steps with each chain's own ε and M⁻¹ keep the moments
    (to the sampling error of 20,000 draws: 2·sqrt(2/n) = 0.02 on the covariance)."""
    energy, n = GaussianEnergy(_MEAN, _COV), 20000
    rng = torch.Generator().manual_seed(0)
    x = energy.sample(n, rng=rng)
    e, g = energy_and_grad(energy, x)
    eps = torch.rand(n, 1, generator=rng) * 0.6 + 0.2
    inv_mass = torch.rand(n, 2, generator=rng) * 2 + 0.1
    probs = []
    with torch.no_grad():
        for _ in range(3):
            (x, e, g), prob, _ = hmc_kernel(x, e, g, energy, eps, 5, mass=1.0, temperature=1.0, rng=rng,
                                            inv_mass=inv_mass)
            probs.append(prob.mean())
    mean_err, cov_err = standardized_errors(*moments(x), _MEAN, _COV)
    assert mean_err < 0.03 and cov_err < 0.04, (mean_err, cov_err)
    assert 0.3 < min(probs) and max(probs) < 0.95  # a step where the correction matters


def test_a_unit_inverse_mass_tensor_gives_the_plain_kernels_chain():
    energy = GaussianEnergy(_MEAN, _COV)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    e, g = energy_and_grad(energy, x)
    with torch.no_grad():
        runs = [hmc_kernel(x, e, g, energy, 0.4, 5, mass=1.0, temperature=2.0, rng=torch.Generator().manual_seed(2),
                           jitter=0.3, **kw) for kw in ({}, {"inv_mass": torch.ones(1, 2)})]
    for a, b in zip(runs[0][0] + runs[0][1:], runs[1][0] + runs[1][1:]):
        assert torch.equal(a, b)


# compiled: a compile per scope (run with -m slow)
@pytest.mark.slow
@pytest.mark.parametrize("scope", ["pooled", "per_chain"])
def test_window_adapted_hmc_compiles_after_its_warm_up_to_the_same_chain(scope):
    """The warm-up runs eagerly (its step counter is a Python int); after it the state's ε
    and M⁻¹ are tensors that the compiled steps take as they are."""
    energy = GaussianEnergy(torch.zeros(2), ANISOTROPIC_COV)
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    samplers = [HMC(n_steps=45, adapt_steps=25, adaptation="window", adaptation_scope=scope, jitter=0.5, compile=c)
                for c in (False, True)]
    runs = [s.run(x0, energy, rng=torch.Generator().manual_seed(2)) for s in samplers]
    assert samplers[1].compiled.failed is None and samplers[1].compiled.calls
    torch.testing.assert_close(runs[0], runs[1])
