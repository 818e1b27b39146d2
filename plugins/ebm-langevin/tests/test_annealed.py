import pytest
import torch
from ebm_langevin import AnnealedLangevin, Langevin

import ebmcore
from ebmcore.kit.conformance import (
    GaussianEnergy,
    check_gaussian_2d,
    check_rng_discipline,
    mixture_targets,
)


def _weights(x: torch.Tensor, means: torch.Tensor) -> list[float]:
    """Fraction of chains nearest to each mode."""
    k = torch.cdist(x.double(), means.double()).argmin(1)
    return (torch.bincount(k, minlength=len(means)).double() / len(x)).tolist()


def test_annealing_populates_both_modes_where_ula_stays_in_one():
    # the kit's 1-D mixture 0.3·N(−4, 0.5²) + 0.7·N(4, 1), every chain started in the light
    # mode; 500 steps of s = 0.05 each. Measured: annealed 0.337 / 0.663, ULA 0.9995 / 0.0005
    energy = mixture_targets()["1d"]
    x0 = torch.full((2000, 1), -4.0)
    annealed = AnnealedLangevin(step_size=0.05, n_levels=10, steps_per_level=50, max_temperature=20.0)
    x = annealed.run(x0, energy, rng=torch.Generator().manual_seed(0))
    ula = Langevin(step_size=0.05).run(x0, energy, annealed.n_steps, rng=torch.Generator().manual_seed(0))
    weights, stuck = _weights(x, energy.means), _weights(ula, energy.means)
    assert abs(weights[1] - 0.7) < 0.1, weights
    assert stuck[1] < 0.01, stuck


def test_at_max_temperature_one_it_is_ula_bit_for_bit():
    energy = GaussianEnergy(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    annealed = AnnealedLangevin(step_size=0.03, n_levels=3, steps_per_level=7, max_temperature=1.0)
    x = annealed.run(x0, energy, rng=torch.Generator().manual_seed(0))
    assert torch.equal(x, Langevin(step_size=0.03).run(x0, energy, 21, rng=torch.Generator().manual_seed(0)))


def test_levels_are_geometric_from_max_temperature_down_to_one():
    annealed = AnnealedLangevin(step_size=0.01, n_levels=3, steps_per_level=2, max_temperature=9.0)
    _, trace = annealed.run(torch.zeros(4, 2), GaussianEnergy(torch.zeros(2), torch.eye(2)), 8,
                            rng=torch.Generator(), trace=True)
    # past the schedule (steps 7 and 8) the chain stays at T = 1
    assert trace["temperature"].tolist() == pytest.approx([9, 9, 3, 3, 1, 1, 1, 1])
    assert trace["temperature"][-1].item() == 1.0


def test_ends_at_the_target_after_the_last_level():
    # the last level is ULA at s = 0.01 for 400 steps, after hot levels that leave it twice too
    # wide (measured: mean within 0.005, covariance within 0.02 of the exact one)
    check_gaussian_2d(AnnealedLangevin(step_size=0.01, n_levels=3, steps_per_level=400, max_temperature=4.0))


def test_mask_keeps_observed_coordinates_fixed():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x0 = torch.full((32, 2), 3.0)
    x = AnnealedLangevin(step_size=0.05).run(x0, energy, rng=torch.Generator(), mask=torch.tensor([True, False]))
    assert torch.equal(x[:, 0], x0[:, 0]) and (x[:, 1] - 3.0).abs().mean() > 1.0


def test_same_rng_seed_gives_same_chain_and_global_rng_untouched():
    check_rng_discipline(AnnealedLangevin(step_size=0.1, n_levels=2, steps_per_level=5))


def test_n_steps_is_the_whole_schedule():
    assert AnnealedLangevin(n_levels=4, steps_per_level=5).n_steps == 20
    assert ebmcore.build("sampler", "annealed_langevin", n_levels=4, steps_per_level=5, n_steps=20).n_steps == 20
    with pytest.raises(ebmcore.RecipeError) as error:
        ebmcore.build("sampler", "annealed_langevin", n_levels=4, steps_per_level=5, n_steps=30)
    assert dict(error.value.problems) == {"$.sampler.n_steps": "must equal n_levels · steps_per_level = 4 · 5 = 20, "
                                          "the whole schedule (leave it unset to take that), got 30"}


@pytest.mark.parametrize("kwargs", [{"step_size": 0.0}, {"n_levels": 0}, {"steps_per_level": 0},
                                    {"max_temperature": 0.5}, {"n_steps": 7}])
def test_meaningless_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        AnnealedLangevin(**kwargs)


def test_one_level_is_ula():
    annealed = AnnealedLangevin(step_size=0.02, n_levels=1, steps_per_level=5, max_temperature=4.0)
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x = annealed.run(torch.ones(8, 2), energy, rng=torch.Generator().manual_seed(0))
    assert torch.equal(x, Langevin(step_size=0.02).run(torch.ones(8, 2), energy, 5, rng=torch.Generator().manual_seed(0)))
    assert annealed.n_steps == 5


# compiled: the step index is a tensor, so one graph serves every level (a compile: -m slow)
@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # no fallback to eager steps
def test_compiled_chains_equal_eager_ones():
    energy = mixture_targets()["1d"]
    x0 = torch.full((64, 1), -4.0)
    x = {c: AnnealedLangevin(step_size=0.05, n_levels=4, steps_per_level=10, max_temperature=20.0, compile=c)
         .run(x0, energy, rng=torch.Generator().manual_seed(0)) for c in (False, True)}
    assert torch.allclose(x[True], x[False], atol=1e-5)
