"""The compiled sampling path (``compile = true``, ebmcore.compiled).

A compiled chain draws the same random numbers as the eager one, in the same order, so it
must give the same samples up to floating-point rounding: that is checked for every
bundled kernel, with the options that change its code path (clamps, masks, step-size
adaptation, traces). The statistical conformance checks run compiled in the plugins' tests
(`-m slow` for the full set). Compilation takes seconds per kernel, so the chains are short.
"""

import warnings

import pytest
import torch
from ebm_hmc import HMC
from ebm_langevin import MALA, Langevin
from torch import nn

import ebmcore.compiled
from ebmcore.kit.conformance import check_gaussian_2d, check_masked_conditional, check_rng_discipline
from ebmcore.train import run_recipe


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 1))

    def forward(self, x, cond=None):
        return self.net(x).squeeze(-1) + x.pow(2).sum(1) / 2  # a bowl, so that chains stay near 0


pytestmark = pytest.mark.usefixtures("one_thread")


def _chain(sampler, energy, n_steps=20, seed=1, **kw):
    rng = torch.Generator().manual_seed(seed)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    return sampler.run(x0, energy, n_steps, rng=rng, **kw)


KERNELS = {
    "langevin clamped": lambda c: Langevin(step_size=0.05, grad_clamp=0.5, clamp=(-2.0, 2.0), compile=c),
    "mala": lambda c: MALA(step_size=0.1, compile=c),
    "hmc": lambda c: HMC(step_size=0.1, n_leapfrog=3, compile=c),
    "hmc adapting": lambda c: HMC(step_size=0.1, n_leapfrog=3, adapt_steps=5, compile=c),
}


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_a_compiled_chain_is_the_eager_chain(kernel):
    energy = MLP()
    sampler = KERNELS[kernel](True)
    mask = torch.zeros(64, 2, dtype=torch.bool)
    mask[:8, 0] = True  # some observed coordinates
    for kw in ({}, {"mask": mask}):
        eager = _chain(KERNELS[kernel](False), energy, 10, **kw)
        compiled = _chain(sampler, energy, 10, **kw)
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
        assert not torch.equal(compiled, _chain(KERNELS[kernel](False), energy, 10, seed=2, **kw))
    steps = sampler.compiled
    assert steps.failed is None and [k for k, _ in steps.calls] == [5 if kernel == "hmc adapting" else 10], (
        "the compiled path did not run")


def test_chains_longer_than_one_call_end_with_a_shorter_call():
    energy = MLP()
    sampler = Langevin(step_size=0.05, compile=True)
    _chain(sampler, energy, 10)
    torch.testing.assert_close(_chain(sampler, energy, 13), _chain(Langevin(step_size=0.05), energy, 13),
                               atol=1e-5, rtol=1e-5)
    assert sorted(k for k, _ in sampler.compiled.calls) == [3, 10]


def test_the_history_of_a_compiled_chain_is_the_eager_history():
    energy = MLP()
    eager = _chain(MALA(step_size=0.1), energy, 12, trace=True)
    compiled = _chain(MALA(step_size=0.1, compile=True), energy, 12, trace=True)
    assert compiled[1].keys() == eager[1].keys() and len(compiled[1]["x"]) == 12
    for k in eager[1]:
        torch.testing.assert_close(compiled[1][k].float(), eager[1][k].float(), atol=1e-5, rtol=1e-5)


class NaNAbove(nn.Module):
    """A quadratic bowl whose energy is NaN for x₀ > 0.5 (check_nan_rejected's, without its counter)."""

    def forward(self, x, cond=None):
        e = x.pow(2).sum(1) / 2
        return torch.where(x[:, 0] > 0.5, torch.full_like(e, float("nan")), e)


@pytest.mark.parametrize("make", [lambda: MALA(step_size=0.5, compile=True),
                                  lambda: HMC(step_size=0.5, n_leapfrog=3, compile=True)], ids=["mala", "hmc"])
def test_compiled_metropolis_kernels_reject_nan_energy_proposals(make):
    sampler, rng = make(), torch.Generator().manual_seed(0)
    x, history = sampler.run(torch.full((512, 2), -1.0), NaNAbove(), 20, rng=rng, trace=True)
    assert sampler.compiled.calls and not history["acceptance_prob"].isnan().any()
    assert (history["acceptance_prob"] == 0).any(), "no proposal reached the NaN region"
    assert x.isfinite().all() and (x[:, 0] <= 0.5).all()


def test_compiled_langevin_samples_a_known_gaussian():
    check_gaussian_2d(Langevin(step_size=0.01, n_steps=1500, compile=True))


def test_where_compilation_fails_the_chain_runs_eagerly_with_one_warning(monkeypatch):
    def broken(fn, **kw):
        def call(*args):
            raise RuntimeError("Compiler: cc not found\nmore detail")
        return call
    monkeypatch.setattr(ebmcore.compiled.torch, "compile", broken)
    energy = MLP()
    sampler = Langevin(step_size=0.05, compile=True)
    with pytest.warns(RuntimeWarning, match=r"compile = true, but RuntimeError: Compiler: cc not found; sampling "
                                            r"eagerly") as caught:
        first = _chain(sampler, energy, 30)
        second = _chain(sampler, energy, 30)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    eager = _chain(Langevin(step_size=0.05), energy, 30)
    assert torch.equal(first, eager) and torch.equal(second, eager)  # the same draws, eager arithmetic


def test_an_energy_error_is_the_energys_not_a_compiler_warning():
    class Broken(nn.Module):
        def forward(self, x, cond=None):
            raise ValueError("energy says no")
    sampler = MALA(step_size=0.1, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="energy says no"):
            _chain(sampler, Broken(), 20)


def test_a_recipe_can_ask_for_compiled_sampling(tiny, tmp_path):
    tiny["sampler"]["compile"] = True
    tiny["run"]["steps"] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        record = run_recipe(tiny, out=str(tmp_path / "run"), progress=False)
    assert record["step"] == 3


# the kit's discipline checks, with the plugin tests' settings (a compile each: -m slow);
# the statistical checks run compiled in the plugins' tests and tests/test_conformance.py
@pytest.mark.slow
@pytest.mark.parametrize("check, make", [
    (check_rng_discipline, lambda: Langevin(step_size=0.1, n_steps=25, compile=True)),
    (check_rng_discipline, lambda: MALA(step_size=0.3, n_steps=25, compile=True)),
    (check_rng_discipline, lambda: HMC(step_size=0.3, n_leapfrog=3, n_steps=25, adapt_steps=5, compile=True)),
    (check_masked_conditional, lambda: MALA(step_size=0.3, n_steps=200, compile=True)),
    (check_masked_conditional, lambda: HMC(step_size=0.3, n_leapfrog=5, n_steps=60, adapt_steps=20, compile=True)),
], ids=["rng langevin", "rng mala", "rng hmc", "mask mala", "mask hmc"])
def test_compiled_kernels_pass_the_discipline_checks(check, make):
    sampler = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        check(sampler)
    assert sampler.compiled.calls, "the compiled path did not run"
