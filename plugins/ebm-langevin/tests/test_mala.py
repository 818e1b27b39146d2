
import pytest
import torch
from ebm_langevin import MALA, Langevin
from torch import nn

from ebmcore.kit.conformance import (
    CountingEnergy,
    GaussianEnergy,
    check_carried_state,
    check_gaussian_2d,
    check_masked_conditional,
    check_nan_rejected,
    check_rng_discipline,
)


def test_mala_is_exact_at_a_step_where_ula_is_biased():
    # the point of MALA: at step 0.3 ULA's covariance is visibly off, MALA's is not
    with pytest.raises(AssertionError, match="does not sample"):
        check_gaussian_2d(Langevin(step_size=0.3, n_steps=300))
    check_gaussian_2d(MALA(step_size=0.3, n_steps=300))




def test_acceptance_is_a_probability_per_chain_and_one_gradient_per_step():
    energy = CountingEnergy()
    s = MALA(step_size=0.5, n_steps=5)
    rng = torch.Generator().manual_seed(0)
    state = s.init(torch.randn(256, 3, generator=rng), energy, rng=rng)
    assert energy.calls == 1
    for k in range(1, 6):
        state, info = s.step(state, energy, rng=rng)
        assert energy.calls == 1 + k
    assert info.acceptance_prob.shape == info.accepted.shape == (256,) and info.accepted.dtype == torch.bool
    assert ((info.acceptance_prob >= 0) & (info.acceptance_prob <= 1)).all()
    assert 0.3 < info.acceptance_prob.mean() < 0.99 and 0 < info.accepted.float().mean() < 1


def test_carried_energy_and_gradient_are_those_of_the_position():
    check_carried_state(MALA(step_size=0.3))


def test_nan_energy_proposals_are_rejected_not_propagated():
    check_nan_rejected(MALA(step_size=0.5, n_steps=30))


def test_mask_keeps_observed_coordinates_bit_identical():
    check_masked_conditional(MALA(step_size=0.3, n_steps=200))


def test_temperature_samples_the_tempered_target():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x = MALA(step_size=0.5, n_steps=200, temperature=2.0).run(
        torch.zeros(4000, 2), energy, rng=torch.Generator().manual_seed(0))
    assert torch.allclose(x.double().var(0), torch.full((2,), 2.0, dtype=torch.float64), atol=0.15)


def test_same_rng_seed_gives_same_chain_and_global_rng_untouched():
    check_rng_discipline(MALA(step_size=0.3, n_steps=10))


class _Flat(nn.Module):
    def forward(self, x, cond=None):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def test_works_on_image_shaped_chains():
    x = MALA(step_size=0.2, n_steps=3).run(torch.zeros(5, 3, 2, 2), _Flat(), rng=torch.Generator())
    assert x.shape == (5, 3, 2, 2) and x.isfinite().all()


@pytest.mark.parametrize("kwargs", [{"step_size": 0.0}, {"step_size": -1.0}, {"n_steps": 0},
                                    {"temperature": 0.0}])
def test_meaningless_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        MALA(**kwargs)


def test_registered_as_sampler_mala():
    from ebmcore import build

    s = build("sampler", "mala", step_size=0.2, n_steps=7)
    assert isinstance(s, MALA) and (s.config.step_size, s.n_steps, s.config.temperature) == (0.2, 7, 1.0)


# the harder conformance checks of ebmcore.kit.conformance (skipped where this ebmcore lacks them)
_CONFORMANCE = [("check_anisotropic_gaussian", 0.003, 300), ("check_gaussian_10d", 0.3, 300),
                ("check_mixture", 0.1, 300), ("check_banana", 0.05, 600)]


# compiled: the same checks through torch.compile (a compile per target: run with -m slow)
@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow, id="compiled")])
@pytest.mark.parametrize("check, step_size, n_steps", _CONFORMANCE, ids=[c[0] for c in _CONFORMANCE])
def test_mala_passes_the_conformance_checks(check, step_size, n_steps, compile):
    import ebmcore.kit.conformance

    if not hasattr(ebmcore.kit.conformance, check):
        pytest.skip(f"ebmcore.kit.conformance has no {check}")
    getattr(ebmcore.kit.conformance, check)(MALA(step_size=step_size, n_steps=n_steps, compile=compile))
