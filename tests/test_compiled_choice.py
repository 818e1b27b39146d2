"""The compiled path's one-time choice between compiled and eager steps (ebmcore.compiled).

Nothing here depends on real timing or compiles: the trial's clock is a stand-in in which
each energy evaluation takes one unit, and ``torch.compile`` is a stand-in that runs the
steps eagerly and makes each call take ``cost`` times what its steps took.
"""

import warnings

import pytest
import torch
from ebm_langevin import MALA, Langevin
from torch import nn

import ebmcore.compiled

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self):
        self.t, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.t


class Bowl(nn.Module):
    """½‖x‖², one time unit per evaluation."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def forward(self, x, cond=None):
        self.clock.t += 1
        return x.pow(2).sum(1) / 2


@pytest.fixture
def fake(monkeypatch):
    """(clock, compiled calls made, set_costs): the i-th compiled call takes costs[i] × (the
    last one for the rest) the time of the same steps run eagerly."""
    clock, calls, costs = Clock(), [], [1.0]
    monkeypatch.setattr(ebmcore.compiled, "clock", clock)

    def compile(fn, **kw):
        def call(*args):
            start = clock.t
            out = fn(*args)
            clock.t += (costs[min(len(calls), len(costs) - 1)] - 1) * (clock.t - start)
            calls.append(1)
            return out
        return call
    monkeypatch.setattr(ebmcore.compiled.torch, "compile", compile)
    return clock, calls, lambda *c: costs.__setitem__(slice(None), c)


def _chain(sampler, energy, n_steps=30, batch=64):
    x0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    return sampler.run(x0, energy, n_steps, rng=torch.Generator().manual_seed(1))


MAKE = {"langevin": lambda c: Langevin(step_size=0.05, compile=c), "mala": lambda c: MALA(step_size=0.1, compile=c)}


@pytest.mark.parametrize("kernel", list(MAKE))
def test_a_slower_compiled_path_is_dropped_and_the_chain_is_unchanged(fake, kernel):
    clock, calls, costs = fake
    costs(2.0)
    energy, sampler = Bowl(clock), MAKE[kernel](True)
    with pytest.warns(UserWarning, match=r"compile = true, but compiled steps took 2\.00× the time of eager ones for "
                                         r"Bowl on x of shape \(64, 2\); sampling eagerly") as caught:
        first = _chain(sampler, energy)
    assert len(caught) == 1 and not any(issubclass(w.category, RuntimeWarning) for w in caught)
    key = (Bowl, torch.Size([64, 2]), torch.float32, torch.device("cpu"))
    assert sampler.compiled.choices == {key: ("eager", 2.0)}
    made, reads = len(calls), clock.reads
    assert made == 1 + ebmcore.compiled.TRIAL_PAIRS  # the trial's only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        second = _chain(sampler, energy)
    assert (len(calls), clock.reads) == (made, reads), "compiled steps, or timing, after the choice"
    eager = _chain(MAKE[kernel](False), energy)
    assert torch.equal(first, eager) and torch.equal(second, eager)  # the same draws, eager arithmetic


def test_a_faster_compiled_path_is_kept_and_chosen_once_per_shape(fake):
    clock, calls, costs = fake
    costs(0.5)
    energy, sampler = Bowl(clock), Langevin(step_size=0.05, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no note when compiled stays
        first = _chain(sampler, energy)
        reads = clock.reads
        assert torch.equal(_chain(sampler, energy), first) and clock.reads == reads
        _chain(sampler, energy, batch=32)  # another shape: another trial
    assert list(sampler.compiled.choices.values()) == [("compiled", 0.5), ("compiled", 0.5)]
    assert clock.reads > reads
    assert torch.equal(first, _chain(Langevin(step_size=0.05), energy))


@pytest.mark.parametrize("costs, path, ratio", [
    ((1.0, 0.5, 3.0, 0.5, 3.0, 0.5), "compiled", 0.5),  # slow outliers: the median of the pairs stays fast
    ((1.0, 1.5, 1.5, 1.5, 1.0, 1.0), "compiled", 1.0),  # mostly slower, but its fastest call is as fast
    ((1.0, 1.04), "eager", 1.04),  # slower, if only a little
    ((1.0, 1.3, 1.2, 1.6, 1.2, 1.4), "eager", 1.2),  # slower every time: the smaller of median and fastest
], ids=["outliers", "fastest as fast", "a little slower", "slower"])
def test_only_a_slower_compiled_path_is_dropped(fake, costs, path, ratio):
    clock, calls, set_costs = fake
    set_costs(*costs)  # the first compiled call is the trial's untimed warm-up
    sampler = Langevin(step_size=0.05, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _chain(sampler, Bowl(clock), 10)
    (chosen,) = sampler.compiled.choices.values()
    assert chosen == (path, pytest.approx(ratio))


def test_a_path_slower_only_within_noise_is_dropped_without_a_warning(fake):
    clock, calls, set_costs = fake
    set_costs(1.0, 1.04)
    sampler = Langevin(step_size=0.05, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1.04 < WARN_ABOVE: eager, silently
        _chain(sampler, Bowl(clock), 10)
    assert [path for path, _ in sampler.compiled.choices.values()] == ["eager"]
