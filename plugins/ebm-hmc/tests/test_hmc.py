import math

import pytest
import torch
from ebm_hmc import HMC, HMCConfig
from torch import nn

from ebmcore import config as cfg
from ebmcore.kit.conformance import (
    CountingEnergy,
    GaussianEnergy,
    check_carried_state,
    check_gaussian_2d,
    check_gaussian_10d,
    check_masked_conditional,
    check_nan_rejected,
    check_rng_discipline,
    gaussian_10d_target,
)


@pytest.mark.parametrize("kwargs", [{}, {"mass": 2.0, "step_size": 0.4}, {"adapt_steps": 50, "step_size": 0.01}],
                         ids=["fixed", "mass", "adapted"])
def test_hmc_samples_a_known_2d_gaussian(kwargs):
    check_gaussian_2d(HMC(**{"step_size": 0.3, "n_leapfrog": 5, "n_steps": 100, **kwargs}))


def _gaussian_10d():
    """N(0, Σ) with a random rotation of eigenvalues 0.5 … 2 (condition number 4)."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    cov = (q * torch.linspace(0.5, 2.0, 10, dtype=torch.float64)) @ q.T
    return GaussianEnergy(torch.zeros(10), cov.float()), cov


@pytest.mark.parametrize("step_size", [0.01, 3.0])
def test_dual_averaging_reaches_the_target_acceptance_on_a_10d_gaussian(step_size):
    energy, cov = _gaussian_10d()
    s = HMC(step_size=step_size, n_leapfrog=5, n_steps=250, adapt_steps=100)
    rng = torch.Generator().manual_seed(0)
    state = s.init(torch.randn(500, 10, generator=rng), energy, rng=rng)
    acc, eps = [], []
    for _ in range(s.n_steps):
        state, info = s.step(state, energy, rng=rng)
        acc.append(info.acceptance_prob.mean())
        eps.append(info.step_size)
    assert state.adaptation is None
    assert all(torch.equal(e, eps[100]) for e in eps[100:])  # fixed after warm-up
    mean_accept = torch.stack(acc[100:]).mean().item()  # measured: 0.66 from either start
    assert abs(mean_accept - 0.65) < 0.1, mean_accept
    x = state.x.double()
    assert (torch.cov(x.T) - cov).abs().max() < 0.25  # and it samples the target




@pytest.mark.parametrize("adapt_steps", [0, 2])
def test_one_gradient_per_leapfrog_step(adapt_steps):
    energy = CountingEnergy()
    s = HMC(step_size=0.3, n_leapfrog=7, n_steps=4, adapt_steps=adapt_steps)
    rng = torch.Generator().manual_seed(0)
    state = s.init(torch.randn(64, 3, generator=rng), energy, rng=rng)
    assert energy.calls == 1
    for k in range(1, 5):
        state, info = s.step(state, energy, rng=rng)
        assert energy.calls == 1 + 7 * k
    assert info.acceptance_prob.shape == info.accepted.shape == (64,) and info.accepted.dtype == torch.bool
    assert ((info.acceptance_prob >= 0) & (info.acceptance_prob <= 1)).all() and info.step_size.dim() == 0


def test_carried_energy_and_gradient_are_those_of_the_position():
    check_carried_state(HMC(step_size=0.5, n_leapfrog=3))


def test_nan_energy_proposals_are_rejected_not_propagated():
    check_nan_rejected(HMC(step_size=0.5, n_leapfrog=3, n_steps=20), n_steps=20)


def test_mask_keeps_observed_coordinates_bit_identical():
    check_masked_conditional(HMC(step_size=0.3, n_leapfrog=5, n_steps=60, adapt_steps=20))


def test_same_rng_seed_gives_same_chain_and_global_rng_untouched():
    check_rng_discipline(HMC(step_size=0.3, n_leapfrog=3, n_steps=10, adapt_steps=5))


def test_sampling_is_in_eval_mode_and_returns_detached():
    energy = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0)).train()
    x = HMC(n_steps=3).run(torch.randn(4, 2, requires_grad=True), energy, rng=torch.Generator())
    assert energy.training and all(p.requires_grad and p.grad is None for p in energy.parameters())
    assert not x.requires_grad and x.grad_fn is None


@pytest.mark.parametrize("kwargs", [{"step_size": 0.0}, {"n_leapfrog": 0}, {"n_steps": 0}, {"mass": 0.0},
                                    {"temperature": -1.0}, {"adapt_steps": -1}, {"adapt_steps": 60},
                                    {"target_accept": 0.0}, {"target_accept": 1.0}])
def test_meaningless_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        HMC(**kwargs)


def test_recipe_errors_name_the_fields():
    _, problems = cfg.structure({"adapt_steps": 100, "n_steps": 50, "target_accept": 1.5}, HMCConfig, "$.sampler")
    assert dict(problems) == {
        "$.sampler.adapt_steps": "must be < n_steps (50), so that some steps run with the adapted step size, got 100",
        "$.sampler.target_accept": "must be < 1 (got 1.5)"}


def test_registered_as_sampler_hmc():
    from ebmcore import RecipeError, build

    s = build("sampler", "hmc", step_size=0.2, n_leapfrog=3, adapt_steps=10)
    assert isinstance(s, HMC) and (s.config.step_size, s.config.n_leapfrog, s.config.adapt_steps) == (0.2, 3, 10)
    with pytest.raises(RecipeError, match="adapt_steps"):
        build("sampler", "hmc", adapt_steps=60)


# the harder conformance checks of ebmcore.kit.conformance (skipped where this ebmcore lacks them),
# each with dual averaging from a deliberately rough initial step size
_CONFORMANCE = [("check_anisotropic_gaussian", 0.05, 5, 60), ("check_gaussian_10d", 0.4, 5, 60),
                ("check_mixture", 0.3, 3, 100), ("check_banana", 0.1, 8, 100)]


# compiled: the same checks through torch.compile (a compile per target: run with -m slow)
@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow, id="compiled")])
@pytest.mark.parametrize("check, step_size, n_leapfrog, n_steps", _CONFORMANCE, ids=[c[0] for c in _CONFORMANCE])
def test_hmc_passes_the_conformance_checks(check, step_size, n_leapfrog, n_steps, compile):
    import ebmcore.kit.conformance

    if not hasattr(ebmcore.kit.conformance, check):
        pytest.skip(f"ebmcore.kit.conformance has no {check}")
    getattr(ebmcore.kit.conformance, check)(HMC(step_size=step_size, n_leapfrog=n_leapfrog, n_steps=n_steps,
                                        adapt_steps=n_steps * 2 // 5, compile=compile))


def _stiffest_variance_ratio(sampler) -> float:
    """Sample variance along the 10-D target's stiffest direction ÷ the true variance there."""
    mean, cov = gaussian_10d_target()
    lam, vec = torch.linalg.eigh(cov.double())
    rng = torch.Generator().manual_seed(0)
    x = sampler.run(torch.randn(4000, 10, generator=rng), GaussianEnergy(mean, cov), rng=rng)
    return float(((x.double() - mean.double()) @ vec[:, 0]).var() / lam[0])


def test_jitter_breaks_the_resonance_of_a_fixed_trajectory():
    """ε·ω·L = π in the 10-D target's stiffest direction (σ = 0.5, so ω = 2; L = 10): every
    fixed trajectory turns that direction by π, mirroring the chain instead of mixing it, so
    its variance stays near that of the starts. Drawing each chain's ε from ±50 % mixes it."""
    eps = math.pi * 0.5 / 10
    assert _stiffest_variance_ratio(HMC(step_size=eps, n_leapfrog=10, n_steps=150)) > 3
    jittered = HMC(step_size=eps, n_leapfrog=10, n_steps=150, jitter=0.5)
    assert abs(_stiffest_variance_ratio(jittered) - 1) < 0.1
    check_gaussian_10d(jittered)


def test_jitter_draws_a_step_size_per_chain_and_compiles_to_the_same_chain():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    runs = [HMC(step_size=0.3, n_leapfrog=3, n_steps=5, jitter=0.5, compile=c).run(
        x0, energy, rng=torch.Generator().manual_seed(2)) for c in (False, True)]
    torch.testing.assert_close(runs[0], runs[1])
    fixed = HMC(step_size=0.3, n_leapfrog=3, n_steps=5).run(x0, energy, rng=torch.Generator().manual_seed(2))
    assert not torch.equal(runs[0], fixed)
