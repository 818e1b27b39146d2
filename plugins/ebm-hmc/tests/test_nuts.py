import math

import pytest
import torch
from ebm_hmc import NUTS, NUTSConfig, nuts_kernel

from ebmcore import config as cfg
from ebmcore import energy_and_grad
from ebmcore.kit.conformance import (
    ANISOTROPIC_COV,
    BananaEnergy,
    CountingEnergy,
    GaussianEnergy,
    check_anisotropic_gaussian,
    check_banana,
    check_carried_state,
    check_gaussian_10d,
    check_masked_conditional,
    check_nan_rejected,
    check_rng_discipline,
    moments,
    standardized_errors,
)


# one thread: two on this shared 2-core machine run these chains many times slower
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the tree against Stan's


class _Recorder:
    """An rng that draws from a generator as ebmcore.kernel does and keeps every draw."""

    def __init__(self, seed: int):
        self.rng, self.draws = torch.Generator().manual_seed(seed), []

    def draw(self, kind: str, like: torch.Tensor) -> torch.Tensor:
        t = torch.empty_like(like, memory_format=torch.contiguous_format)
        self.draws.append(t.normal_(generator=self.rng) if kind == "normal" else t.uniform_(generator=self.rng))
        return self.draws[-1]


def _stan_transition(energy, x, p, eps, max_depth, uniforms):
    """One chain's transition as Stan's base_nuts.hpp writes it (transition and build_tree;
    unit metric, T = 1), recursively, in float64. ``uniforms(depth)`` gives the doubling's
    direction draw, its subtree's merge draws in the order the recursion merges, and the
    draw that merges the subtree into the trajectory."""
    def grad(y):
        y = y.detach().requires_grad_(True)
        return torch.autograd.grad(energy(y[None]).sum(), y)[0]

    def hamiltonian(y, q):
        return (energy(y[None])[0] + 0.5 * q @ q).item()

    def criterion(p_a, p_b, rho):
        return bool(p_a @ rho > 0) and bool(p_b @ rho > 0)

    h0, stats = hamiltonian(x, p), {"n": 0, "metro": 0.0, "divergent": False}

    def build_tree(z, depth, sign, merges):
        """(valid, end state, proposal, p at its start, p at its end, ρ, log Σ weight)."""
        if depth == 0:
            y, q = z
            q = q - sign * eps / 2 * grad(y)
            y = y + sign * eps * q
            q = q - sign * eps / 2 * grad(y)
            stats["n"] += 1
            h = hamiltonian(y, q)
            h = math.inf if math.isnan(h) else h
            stats["divergent"] |= h - h0 > 1000
            stats["metro"] += min(1.0, math.exp(h0 - h))
            return not stats["divergent"], (y, q), y, q, q, q, h0 - h
        valid, z, propose, p_beg, p_init_end, rho_init, w_init = build_tree(z, depth - 1, sign, merges)
        if not valid:
            return (False, z) + (None,) * 5
        valid, z, propose_final, p_final_beg, p_end, rho_final, w_final = build_tree(z, depth - 1, sign, merges)
        if not valid:
            return (False, z) + (None,) * 5
        w = max(w_init, w_final) + math.log1p(math.exp(-abs(w_init - w_final)))
        if next(merges) < math.exp(w_final - w):
            propose = propose_final
        rho = rho_init + rho_final
        persist = (criterion(p_beg, p_end, rho) and criterion(p_beg, p_final_beg, rho_init + p_final_beg)
                   and criterion(p_init_end, p_end, rho_final + p_init_end))
        return persist, z, propose, p_beg, p_end, rho, w

    z_fwd = z_bck = (x, p)
    sample, rho, log_w, depth = x, p, 0.0, 0
    p_fwd_fwd = p_fwd_bck = p_bck_fwd = p_bck_bck = p
    while depth < max_depth:
        u_direction, merges, u_merge = uniforms(depth)
        merges = iter(merges)
        if u_direction < 0.5:
            rho_bck, p_bck_fwd = rho, p_fwd_fwd
            valid, z_fwd, propose, p_fwd_bck, p_fwd_fwd, rho_fwd, w_sub = build_tree(z_fwd, depth, 1, merges)
        else:
            rho_fwd, p_fwd_bck = rho, p_bck_bck
            valid, z_bck, propose, p_bck_fwd, p_bck_bck, rho_bck, w_sub = build_tree(z_bck, depth, -1, merges)
        if not valid:
            break
        depth += 1
        if u_merge < math.exp(w_sub - log_w):
            sample = propose
        log_w = max(log_w, w_sub) + math.log1p(math.exp(-abs(log_w - w_sub)))
        rho = rho_bck + rho_fwd
        if not (criterion(p_bck_bck, p_fwd_fwd, rho) and criterion(p_bck_bck, p_fwd_bck, rho_bck + p_fwd_bck)
                and criterion(p_bck_fwd, p_fwd_fwd, rho_fwd + p_bck_fwd)):
            break
    return sample, stats["n"], depth, stats["divergent"], stats["metro"] / stats["n"]


@pytest.mark.parametrize("step_size", [0.05, 0.25, 0.6], ids=["deep trees", "shallow", "diverging"])
def test_every_chain_makes_stans_transition(step_size):
    """The batched, iterative tree equals Stan's recursion chain by chain, given the same
    draws: the point drawn, gradients, depth, divergence and acceptance statistic (the
    banana in float64, so that no U-turn test is decided by rounding)."""
    energy, n = BananaEnergy(), 40
    x = 1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    e, g = energy_and_grad(energy, x)
    rng = _Recorder(2)
    with torch.no_grad():
        (x_new, e_new, _), info = nuts_kernel(x, e, g, energy, torch.tensor(step_size, dtype=torch.float64),
                                             max_depth=6, inv_mass=1.0, temperature=1.0, rng=rng)
    p, draws = rng.draws[0], rng.draws[1:]  # the momentum; per doubling j: direction, 2^j − 1 merges, merge

    def uniforms(i):
        def at(depth):
            k = 2 ** depth - 1 + depth  # the draws of the doublings before
            return draws[k][i].item(), [u[i].item() for u in draws[k + 1:k + 2 ** depth]], draws[k + 2 ** depth][i].item()
        return at

    for i in range(n):
        sample, n_grads, depth, diverging, accept = _stan_transition(energy, x[i], p[i], step_size, 6, uniforms(i))
        assert torch.equal(sample, x_new[i]), i
        assert (n_grads, depth, diverging) == (info.n_grads[i].item(), info.depth[i].item(),
                                              info.diverging[i].item()), i
        assert info.acceptance_prob[i].item() == pytest.approx(accept, abs=1e-12), i
    torch.testing.assert_close(e_new, energy(x_new))
    if step_size == 0.6:
        assert info.diverging.any()
    if step_size == 0.05:
        assert (info.depth == 6).any()  # some chains stop at max_depth


# ---------------------------------------------------------------- what it samples


_MEAN, _COV = torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])


@pytest.mark.parametrize("mass, temperature, per_chain_mass", [(1.0, 1.0, False), (3.0, 1.0, False),
                                                              (1.0, 2.0, False), (1.0, 1.0, True)],
                         ids=["unit", "mass", "temperature", "diagonal mass per chain"])
def test_the_kernel_leaves_exp_minus_e_over_t_invariant(mass, temperature, per_chain_mass):
    """From exact draws of N(μ, T·Σ), three NUTS steps at a large ε keep the moments (to
    the sampling error of 20,000 draws: 2·sqrt(2/n) = 0.02 on the covariance)."""
    energy, n = GaussianEnergy(_MEAN, _COV), 20000
    rng = torch.Generator().manual_seed(0)
    x = _MEAN + (energy.sample(n, rng=rng) - _MEAN) * temperature ** 0.5
    e, g = energy_and_grad(energy, x)
    inv_mass = torch.rand(n, 2, generator=rng) * 2 + 0.1 if per_chain_mass else 1 / mass
    with torch.no_grad():
        for _ in range(3):
            (x, e, g), info = nuts_kernel(x, e, g, energy, torch.tensor(0.9), max_depth=8, inv_mass=inv_mass,
                                          temperature=temperature, rng=rng)
    mean_err, cov_err = standardized_errors(*moments(x), _MEAN, temperature * _COV)
    assert mean_err < 0.03 and cov_err < 0.04, (mean_err, cov_err)
    assert 0.5 < info.acceptance_prob.mean() < 0.95  # a step where the correction matters


# one config for the three targets: dual averaging of ε from the default (no mass: window
# adaptation is tests/test_window_adaptation.py). target_accept 0.9: at Stan's 0.8 (ε ≈ 0.52)
# 2 % of the banana's transitions diverge in its tails, which then fill slowly (twist error
# 0.52–0.67 over six seeds, tolerance 0.7). With a unit mass the anisotropic target takes
# ~25 gradients a step and the batch ~127 in lockstep: slow, as is the 10-D one
_NUTS = {"n_steps": 40, "adapt_steps": 20, "adaptation": "step_size", "target_accept": 0.9}


@pytest.mark.parametrize("check", [
    pytest.param(check_anisotropic_gaussian, marks=pytest.mark.slow, id="anisotropic"),
    pytest.param(check_gaussian_10d, marks=pytest.mark.slow, id="10d"),
    pytest.param(check_banana, id="banana")])
def test_nuts_passes_the_conformance_checks(check):
    check(NUTS(**_NUTS))


def test_carried_energy_and_gradient_are_those_of_the_position():
    check_carried_state(NUTS(step_size=0.5))


def test_nan_energy_points_end_the_tree_and_are_never_drawn():
    check_nan_rejected(NUTS(step_size=0.5, n_steps=20), n_steps=20)


@pytest.mark.parametrize("scope", ["pooled", "per_chain"])
def test_mask_keeps_observed_coordinates_bit_identical(scope):
    check_masked_conditional(NUTS(n_steps=30, adapt_steps=25, adaptation_scope=scope))


@pytest.mark.parametrize("adaptation", ["step_size", "window"])
def test_same_rng_seed_gives_same_chain_and_global_rng_untouched(adaptation):
    check_rng_discipline(NUTS(step_size=0.3, n_steps=25, adapt_steps=22, adaptation=adaptation), n_steps=25)


# ---------------------------------------------------------------- the batch


def test_chains_spend_only_their_own_gradients_while_the_batch_runs_in_lockstep():
    energy = CountingEnergy()
    s = NUTS(step_size=0.3, max_depth=6)
    rng = torch.Generator().manual_seed(0)
    state = s.init(torch.randn(256, 3, generator=rng) * 3, energy, rng=rng)
    assert energy.calls == 1
    for _ in range(5):
        calls = energy.calls
        state, info = s.step(state, energy, rng=rng)
        lockstep = energy.calls - calls  # one batched gradient per leapfrog step, 2^k − 1 in all
        assert lockstep + 1 == 2 ** round(math.log2(lockstep + 1))
        assert (lockstep + 1) / 2 <= info.n_grads.max() <= lockstep  # the last doubling ran for some chain
        # a chain keeps 'depth' doublings: 2^depth − 1 steps, plus any of a last subtree it dropped
        assert ((2 ** info.depth - 1 <= info.n_grads) & (info.n_grads < 2 ** (info.depth + 1))).all()
        assert (info.n_grads < lockstep).any()  # some stopped earlier and spent less
    assert info.acceptance_prob.shape == info.n_grads.shape == info.depth.shape == info.diverging.shape == (256,)
    assert info.diverging.dtype == torch.bool and ((info.acceptance_prob >= 0) & (info.acceptance_prob <= 1)).all()


def test_max_depth_bounds_the_tree():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    rng = torch.Generator().manual_seed(0)
    s = NUTS(step_size=0.01, max_depth=3)  # a U-turn would take ~300 steps
    state = s.init(torch.randn(64, 2, generator=rng), energy, rng=rng)
    state, info = s.step(state, energy, rng=rng)
    assert (info.depth == 3).all() and (info.n_grads == 7).all()


def test_divergences_are_flagged_and_their_points_never_drawn():
    energy = GaussianEnergy(torch.zeros(2), ANISOTROPIC_COV)
    rng = torch.Generator().manual_seed(0)
    s = NUTS(step_size=0.5)  # 6 times the stiff direction's stable step
    x0 = torch.randn(512, 2, generator=rng) * torch.tensor([1.0, 0.05])
    state, info = s.step(s.init(x0, energy, rng=rng), energy, rng=rng)
    assert info.diverging.float().mean() > 0.9 and state.x.isfinite().all()
    first = info.diverging & (info.depth == 0)  # the first subtree diverged: nothing else to draw
    assert first.any() and torch.equal(state.x[first], x0[first])


def test_compile_runs_eagerly_and_draws_the_same_chain():
    energy = GaussianEnergy(_MEAN, _COV)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    runs = [NUTS(step_size=0.3, n_steps=5, compile=c).run(x0, energy, rng=torch.Generator().manual_seed(2))
            for c in (False, True)]
    assert torch.equal(*runs)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("kwargs", [{"step_size": 0.0}, {"max_depth": 0}, {"n_steps": 0}, {"mass": 0.0},
                                    {"temperature": 0.0}, {"adapt_steps": 60}, {"target_accept": 1.0},
                                    {"adaptation": "mass"}, {"adaptation_scope": "chain"}])
def test_meaningless_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        NUTS(**kwargs)


def test_recipe_errors_name_the_fields():
    _, problems = cfg.structure({"adapt_steps": 100, "n_steps": 50, "max_depth": 0}, NUTSConfig, "$.sampler")
    assert dict(problems) == {
        "$.sampler.adapt_steps": "must be < n_steps (50), so that some steps run with the adapted step size, got 100",
        "$.sampler.max_depth": "must be >= 1 (got 0)"}
    _, problems = cfg.structure({"adaptation": "windows"}, NUTSConfig, "$.sampler")
    assert dict(problems) == {
        "$.sampler.adaptation": "must be one of 'step_size', 'window', got 'windows' (did you mean 'window'?)"}


def test_registered_as_sampler_nuts():
    from ebmcore import build

    s = build("sampler", "nuts", max_depth=5, adapt_steps=10, adaptation_scope="per_chain")
    assert isinstance(s, NUTS) and (s.config.max_depth, s.config.adapt_steps, s.config.adaptation,
                                    s.config.adaptation_scope) == (5, 10, "window", "per_chain")
