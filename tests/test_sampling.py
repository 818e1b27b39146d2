"""The shared sampling loop: traces for diagnostics, masks, and what it leaves behind."""

import warnings

import pytest
import torch
from ebm_langevin import Langevin

from ebmcore.kit.conformance import GaussianEnergy
from ebmcore.sampling import nonfinite_chains


def test_trace_is_off_by_default_and_records_positions_and_info_when_asked():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    sampler = Langevin(step_size=0.1, n_steps=7)
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    plain = sampler.run(x0, energy, rng=torch.Generator().manual_seed(1))
    x, history = sampler.run(x0, energy, rng=torch.Generator().manual_seed(1), trace=True)
    assert torch.equal(plain, x)  # tracing changes nothing
    assert history["x"].shape == (7, 5, 2) and torch.equal(history["x"][-1], x)
    # Langevin's Info holds the energy at the start of each step
    assert history["energy"].shape == (7, 5)
    assert torch.allclose(history["energy"][0], energy(x0))
    # ∇E of a standard Gaussian energy is x: its norm at the first step is ‖x0‖
    assert torch.allclose(history["grad_norm"][0], x0.norm(dim=1))


def test_masked_coordinates_are_bit_identical_for_a_broadcast_mask():
    energy = GaussianEnergy(torch.zeros(3), torch.eye(3))
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([False, True, False])
    x = Langevin(step_size=0.1, n_steps=20).run(x0, energy, rng=torch.Generator(), mask=mask)
    assert torch.equal(x[:, 1], x0[:, 1])
    assert not torch.equal(x[:, 0], x0[:, 0]) and not torch.equal(x[:, 2], x0[:, 2])


def test_annealing_samples_each_temperature_of_the_schedule():
    # exp(−E/T) for a standard Gaussian energy is N(0, T): the spread follows the schedule
    energy = GaussianEnergy(torch.zeros(1), torch.eye(1))
    # (ULA's own bias at step 0.01 is 0.1 % at T = 4 and 2 % at T = 0.25)
    sampler = Langevin(step_size=0.01, n_steps=1800)
    schedule = [4.0] * 1500 + [0.25] * 300
    x, history = sampler.run(torch.zeros(4000, 1), energy, rng=torch.Generator().manual_seed(0),
                             trace=True, temperatures=schedule)
    assert abs(history["x"][1499].var().item() - 4.0) < 0.3
    assert abs(x.var().item() - 0.25) < 0.025


def test_a_schedule_of_the_wrong_length_is_rejected():
    import pytest

    energy = GaussianEnergy(torch.zeros(1), torch.eye(1))
    with pytest.raises(ValueError, match="need 3 positive values"):
        Langevin(n_steps=3).run(torch.zeros(2, 1), energy, rng=torch.Generator(), temperatures=[1.0, 2.0])


def test_metropolis_kernels_trace_acceptance_and_gradient_norms():
    from ebm_hmc import HMC

    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    _, history = HMC(step_size=0.2, n_leapfrog=3, n_steps=5).run(
        torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), energy,
        rng=torch.Generator().manual_seed(1), trace=True)
    assert history["acceptance_prob"].shape == (5, 8) and history["grad_norm"].shape == (5, 8)
    assert torch.allclose(history["grad_norm"][-1], history["x"][-1].norm(dim=1))


def test_chains_that_end_non_finite_are_reported_with_the_fraction_and_first_step():
    """ULA on N(0, 1) is unstable for step sizes above 1: the iterate grows by |1 − s| a step."""
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    x0 = torch.cat([torch.full((3, 2), 1.0), torch.zeros(1, 2)])
    sampler = Langevin(step_size=2.5, noise=0.0, n_steps=400)
    x0[3] = float("nan")  # one chain starts non-finite; the others overflow later
    with pytest.warns(RuntimeWarning, match=r"4 of 4 chains \(100 %\) are non-finite after 400 steps; "
                                            r"the first went at step 1\b"):
        sampler.run(x0, energy, rng=torch.Generator())
    with pytest.warns(RuntimeWarning, match=r"3 of 3 chains .* the first went at step (\d{3})"):
        sampler.run(x0[:3], energy, rng=torch.Generator())
    with nonfinite_chains("raise"), pytest.raises(FloatingPointError, match="non-finite"):
        sampler.run(x0[:3], energy, rng=torch.Generator())
    with nonfinite_chains("ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sampler.run(x0[:3], energy, rng=torch.Generator()).isnan().all()


def test_the_report_replays_the_chain_without_moving_the_callers_rng():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    sampler = Langevin(step_size=2.5, n_steps=400)
    rng, same = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with pytest.warns(RuntimeWarning):
        a = sampler.run(torch.ones(4, 2), energy, rng=rng)
    with nonfinite_chains("ignore"):
        b = sampler.run(torch.ones(4, 2), energy, rng=same)
    assert torch.equal(rng.get_state(), same.get_state()) and torch.equal(a.isnan(), b.isnan())


def test_finite_chains_say_nothing_and_any_function_of_x_is_an_energy():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = Langevin(step_size=0.1, n_steps=50).run(torch.zeros(500, 2), lambda x: 0.5 * (x - 3).pow(2).sum(1),
                                                     rng=torch.Generator().manual_seed(0))
    assert (x.mean(0) - 3).abs().max() < 0.3
