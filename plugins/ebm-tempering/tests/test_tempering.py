import pytest
import torch
from ebm_tempering import ParallelTempering, ParallelTemperingConfig
from torch import nn

import ebmcore
import ebmcore.kit.conformance as kit
from ebmcore import config as cfg


def _build(**settings):
    return ebmcore.build("sampler", "parallel_tempering", **settings)


def _weights(x: torch.Tensor, means: torch.Tensor) -> list[float]:
    """Fraction of chains nearest to each mode."""
    k = torch.cdist(x.double(), means.double()).argmin(1)
    return (torch.bincount(k, minlength=len(means)).double() / len(x)).tolist()


def test_recovers_the_mode_weights_from_one_mode_where_the_kernel_alone_does_not():
    # the kit's 1-D mixture 0.3·N(−4, 0.5²) + 0.7·N(4, 1), a barrier of 8 nats between the
    # modes, every chain started in the light mode. Measured (2,000 chains, 150 steps):
    # PT 0.2935 / 0.7065 (seeds 1-3: 0.303, 0.2945, 0.292), swap rates 0.86-0.90 along the
    # ladder; HMC alone 1.0 / 0.0
    energy = kit.mixture_targets()["1d"]
    x0 = torch.full((2000, 1), -4.0)
    hmc = {"step_size": 0.5, "n_leapfrog": 8}
    pt = _build(kernel="hmc", kernel_options=hmc, n_temperatures=8, max_temperature=20.0, n_steps=150)
    x, trace = pt.run(x0, energy, rng=torch.Generator().manual_seed(0), trace=True)
    alone = ebmcore.build("sampler", "hmc", **hmc, n_steps=150).run(x0, energy, rng=torch.Generator().manual_seed(0))
    weights, stuck = _weights(x, energy.means), _weights(alone, energy.means)
    assert abs(weights[0] - 0.3) < 0.03 and abs(weights[1] - 0.7) < 0.03, weights
    assert stuck[0] > 0.95, stuck  # the kernel alone stays where it started
    rates = trace["swap_prob"].double().mean((0, 1))
    assert rates.shape == (7,) and ((rates > 0.5) & (rates < 1)).all(), rates


def _mala_ladder(step_size: float, n_steps: int) -> ParallelTempering:
    # a ladder of 4 to T = 4: the hot replicas start as copies of the starts, far from their
    # wider targets, and relax at the step the stiffest direction at T = 1 allows; until they
    # have, exchanges hand that transient down (default ladder to T = 10 on the anisotropic
    # Gaussian at 300 steps: cov error 0.118 of 0.12; this ladder 0.076, and 0.035 at 1,500)
    return _build(kernel="mala", kernel_options={"step_size": step_size}, n_temperatures=4,
                  max_temperature=4.0, n_steps=n_steps)


# measured (the T = 1 chains): anisotropic mean 0.037, cov 0.076, stiffest −0.020; 10-D mean
# 0.034, cov 0.080, stiffest 0.018; banana mean 0.023, cov 0.094, twist error 0.23
@pytest.mark.parametrize("check, step_size, n_steps", [(kit.check_anisotropic_gaussian, 0.003, 300),
                                                       (kit.check_gaussian_10d, 0.3, 100),
                                                       (kit.check_banana, 0.05, 600)],
                         ids=["anisotropic", "gaussian_10d", "banana"])
def test_passes_the_conformance_checks(check, step_size, n_steps):
    check(_mala_ladder(step_size, n_steps))


def test_keeps_every_tempered_target_from_exact_starts():
    # all replicas returned, each temperature started at exact draws of N(0, T·Σ): no
    # transient, so what moves is bias (measured errors all below 0.06)
    cov = kit.ANISOTROPIC_COV
    pt = _build(kernel="mala", kernel_options={"step_size": 0.003}, n_temperatures=4, max_temperature=4.0,
                n_steps=100, return_all=True)
    rng = torch.Generator().manual_seed(0)
    scale = torch.linalg.cholesky(cov.double()).float().T
    x0 = torch.cat([torch.randn(2000, 2, generator=rng) @ scale * t**0.5 for t in pt.ladder])
    x = pt.run(x0, kit.GaussianEnergy(torch.zeros(2), cov), rng=rng)
    assert x.shape == x0.shape
    for k, t in enumerate(pt.ladder):
        mean_err, cov_err = kit.standardized_errors(*kit.moments(x[k * 2000:(k + 1) * 2000]), torch.zeros(2), cov * t)
        assert mean_err < 0.1 and cov_err < 0.15, (t, mean_err, cov_err)


def test_neighbours_swap_in_alternate_even_and_odd_rounds():
    # a flat energy and a kernel that does not move: every proposed exchange is accepted
    pt = _build(kernel="langevin", kernel_options={"noise": 0.0}, n_temperatures=4, return_all=True)

    def flat(x):
        return 0 * x.sum(1)

    state = pt.init(torch.arange(4.0)[:, None], flat, rng=torch.Generator())
    rows = []
    for _ in range(3):
        state, info = pt.step(state, flat, rng=torch.Generator())
        rows.append(state.x.flatten().tolist())
        assert torch.equal(info.swap_prob, torch.ones(1, 3))
    assert rows == [[1, 0, 3, 2], [1, 3, 0, 2], [3, 1, 2, 0]]
    assert info.swapped.tolist() == [[True, False, True]]


def test_a_swap_round_costs_one_energy_evaluation_and_the_kernels_init():
    energy = kit.CountingEnergy()
    pt = _build(kernel="mala", kernel_options={"step_size": 0.1}, n_temperatures=3, max_temperature=9.0,
                swap_every=4)
    rng = torch.Generator().manual_seed(0)
    state = pt.init(torch.randn(8, 2, generator=rng), energy, rng=rng)
    assert energy.calls == 1  # one call for all 3·8 replicas
    for k in range(1, 4):
        state, info = pt.step(state, energy, rng=rng)
        assert energy.calls == 1 + 6 * k  # 4 kernel steps, the swap decisions, the kernel's init
    assert state.x.shape == (8, 2) and state.replicas.x.shape == (24, 2)
    assert info.swap_prob.shape == info.swapped.shape == (8, 2)
    assert info.kernel.acceptance_prob.shape == (8,)  # the kernel's Info at T = 1
    # the re-initialised kernel state carries E/T and ∇E/T of each replica's own position
    beta = state.beta.view(3, 8)[:, 0]
    assert torch.allclose(beta, torch.tensor([1, 1 / 3, 1 / 9]))
    assert torch.allclose(state.replicas.energy, energy(state.replicas.x) * state.beta)


class _ScaledFamily(nn.Module):
    """E(x)/T computed by another module than ebmcore's: parallel tempering cannot tell
    it is linear in 1/T and takes the general exchange ratio from three evaluations."""

    def __init__(self, energy, temperature):
        super().__init__()
        self.energy, self.temperature = energy, temperature

    def forward(self, x, cond=None):
        return self.energy(x) / self.temperature


class _OwnFamily(kit.MixtureEnergy):
    def tempered(self, temperature):
        return _ScaledFamily(self, temperature)


def test_the_general_exchange_ratio_equals_the_one_for_a_scaled_energy():
    fast = kit.mixture_targets()["1d"]
    own = _OwnFamily(fast.weights, fast.means, fast.scales)
    pt = _build(kernel="mala", kernel_options={"step_size": 0.3}, n_temperatures=4, max_temperature=20.0)
    x0 = torch.full((256, 1), -4.0)
    states = {e: pt.init(x0, e, rng=torch.Generator().manual_seed(0)) for e in (fast, own)}
    rngs = {e: torch.Generator().manual_seed(1) for e in (fast, own)}
    for _ in range(20):
        (states[fast], a), (states[own], b) = (pt.step(states[e], e, rng=rngs[e]) for e in (fast, own))
        assert torch.allclose(a.swap_prob, b.swap_prob, atol=1e-5)
    assert torch.allclose(states[fast].replicas.x, states[own].replicas.x, atol=1e-4)
    assert (states[fast].replicas.x < 0).any() and (states[fast].replicas.x > 0).any()  # swaps did move chains


def test_nan_energies_are_never_swapped_in():
    # replicas at T = 2 start where E is NaN; their kernel never leaves (every ratio is NaN)
    # and no exchange with them is accepted: the T = 1 chains stay where E is finite
    energy = kit.CountingEnergy(nan_above=0.5)
    pt = _build(kernel="mala", kernel_options={"step_size": 0.3}, temperatures=(1.0, 2.0), n_steps=30,
                return_all=True)
    x0 = torch.cat([torch.full((256, 2), -1.0), torch.full((256, 2), 1.0)])
    rng = torch.Generator().manual_seed(0)
    state = pt.init(x0, energy, rng=rng)
    for _ in range(30):
        state, info = pt.step(state, energy, rng=rng)
        assert not info.swap_prob.isnan().any() and not info.swapped.any()
    cold = state.x[:256]
    assert cold.isfinite().all() and (cold[:, 0] <= 0.5).all() and not energy(cold).isnan().any()


def test_mask_keeps_observed_coordinates_bit_identical():
    kit.check_masked_conditional(_mala_ladder(0.3, 100))


class _Shifted(nn.Module):
    """E(x, c) = ½ |x − c|²: N(c, I), one centre per chain."""

    def forward(self, x, cond=None):
        return 0.5 * (x - cond[:, None]).pow(2).sum(1)


def test_cond_reaches_every_replica_of_its_chain():
    cond = torch.tensor([-5.0, 5.0]).repeat(500)
    x = _mala_ladder(0.3, 100).run(torch.zeros(1000, 2), _Shifted(), rng=torch.Generator().manual_seed(0), cond=cond)
    assert abs(x[cond < 0].mean() + 5) < 0.1 and abs(x[cond > 0].mean() - 5) < 0.1


def test_same_rng_seed_gives_same_chain_and_global_rng_untouched():
    kit.check_rng_discipline(_mala_ladder(0.1, 10))


def test_the_ladder_is_geometric_or_given():
    assert _build(n_temperatures=3, max_temperature=9.0).ladder == pytest.approx((1.0, 3.0, 9.0))
    assert _build(temperatures=[1.0, 1.5, 4.0]).ladder == (1.0, 1.5, 4.0)


@pytest.mark.parametrize("settings, where, message", [
    ({"temperatures": [2.0, 3.0]}, "temperatures", "must start at 1 and increase strictly"),
    ({"temperatures": [1.0, 3.0, 2.0]}, "temperatures", "must start at 1 and increase strictly"),
    ({"temperatures": [1.0, 2.0], "n_temperatures": 4}, "temperatures", "give the ladder one way"),
    ({"n_temperatures": 1}, "n_temperatures", "must be >= 2"),
    ({"max_temperature": 1.0}, "max_temperature", "must be > 1"),
    ({"swap_every": 0}, "swap_every", "must be > 0"),
    ({"kernel": "malla"}, "kernel", "unknown sampler 'malla' (did you mean 'mala'?)"),
    ({"kernel_options": {"step_sise": 0.1}}, "kernel_options.step_sise", "did you mean 'step_size'"),
    ({"kernel": "hmc", "kernel_options": {"n_leapfrog": 0}}, "kernel_options.n_leapfrog", "must be > 0"),
    ({"kernel_options": {"temperature": 2.0}}, "kernel_options", "the ladder sets each replica's temperature"),
])
def test_recipe_errors_name_the_key(settings, where, message):
    with pytest.raises(ebmcore.RecipeError) as error:
        _build(**settings)
    assert message in dict(error.value.problems)[f"$.sampler.{where}"], error.value.problems


def test_return_all_needs_a_batch_split_evenly_over_the_temperatures():
    pt = _build(n_temperatures=4, return_all=True)
    with pytest.raises(ValueError, match=r"batch \(6\) must be divisible by the 4 temperatures"):
        pt.run(torch.zeros(6, 2), kit.GaussianEnergy(torch.zeros(2), torch.eye(2)), rng=torch.Generator())


def test_the_kernel_comes_from_the_registry_with_its_options():
    pt = _build(kernel="hmc", kernel_options={"step_size": 0.2, "n_leapfrog": 3}, n_steps=7)
    assert pt.kernel.config.n_leapfrog == 3 and pt.kernel.config.step_size == 0.2 and pt.n_steps == 7
    structured = cfg.unstructure(pt.config)
    assert structured["kernel_options"] == {"step_size": 0.2, "n_leapfrog": 3}
    assert cfg.structured(structured, ParallelTemperingConfig, "$.sampler") == pt.config


# compiled: kernel steps and swaps through torch.compile (about a minute to compile here: -m slow)
@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # no fallback to eager steps
def test_compiled_chains_equal_eager_ones():
    energy = kit.mixture_targets()["1d"]
    x0 = torch.full((64, 1), -4.0)
    x = {c: _build(kernel="mala", kernel_options={"step_size": 0.3}, n_temperatures=4, max_temperature=20.0,
                   n_steps=20, compile=c).run(x0, energy, rng=torch.Generator().manual_seed(0))
         for c in (False, True)}
    assert torch.allclose(x[True], x[False], atol=1e-5)
