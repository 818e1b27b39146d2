"""benchmarks/training_speed.py: it runs, and its hand-written loop is the runner's algorithm.

The correctness check puts the hand loop in exactly the state of an ebm run a few steps in
(weights, Adam state, replay buffer, and torch's global RNG set to the run's RNG state, so
that both draw the same random numbers in the same order), feeds it the batch the run is
about to draw, and takes one step of each: the loss, the chain ends written to the replay
buffer and the parameter update must agree up to floating-point rounding. A different
algorithm (no replay buffer, a wrong sign in the chain, other settings) fails it, which the
mutants below check.
"""

import copy
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import ROOT

BENCH = ROOT / "benchmarks" / "training_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("training_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ts = _load()


def test_quick_run_prints_a_ratio(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--workloads", "toy", "--threads", "1",
                        "--json", str(out)], check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("toy ")]
    assert len(rows) == 1 and rows[0][1] == "ebm", r.stdout
    ebm, ratio, paired = (float(v) for v in rows[0][2:5])
    res = json.loads(out.read_text())["results"]["toy"]
    hand = res["rate"]["hand"]
    assert ebm > 0 and hand > 0 and math.isclose(ratio, ebm / hand, rel_tol=0.01)
    assert 0.05 < ratio < 20 and 0.05 < paired < 20, r.stdout
    assert "fmnist" not in r.stdout
    assert res["recipe"] == "recipes/toy2d-persistent.toml" and res["batch"] == 256


def _peek(stream):
    """The batch the run's stream gives next, leaving the stream as it was."""
    saved = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in stream.state().items()}
    x = stream.next().x
    stream.restore(saved)
    return x


def _spy_metrics(run) -> dict:
    seen = {}
    observe = run.guard.observe

    def spy(step, metrics):
        seen.clear()
        seen.update({k: v.clone() for k, v in metrics.items()})
        observe(step, metrics)

    run.guard.observe = spy
    return seen


def _hand_in_state_of(run):
    """A hand loop in exactly the run's state: weights, Adam state, replay buffer."""
    hand = ts.hand_from_run(run)
    # a copy: load_state_dict would share the run's Adam moment tensors, not copy them
    hand.opt.load_state_dict(copy.deepcopy(run.state.optimisers.groups["energy"][0].state_dict()))
    gen = run.objective.generator
    if hand.buffer is not None:
        hand.buffer.copy_(gen.x)
        hand.count, hand.ptr = int(gen.count), int(gen.ptr)
    return hand


def _one_step_each(run, mutate=None):
    """(ebm loss, hand loss, ebm Δθ, hand Δθ, ebm buffer, hand buffer) of one step from one state."""
    hand = _hand_in_state_of(run)
    if mutate:
        mutate(hand)
    energy = run.ctx.built["energy"]
    before = [p.detach().clone() for p in energy.parameters()]
    x = _peek(run.state.stream)
    rng_state = run.state.rng.get_state()
    torch.set_rng_state(rng_state)  # the global RNG the hand loop draws from = the run's RNG
    hand_loss = hand.step(x.clone())
    seen = _spy_metrics(run)
    ebm = ts.EbmSteps(run)
    try:
        ebm.steps(1)
    finally:
        del run.guard.observe  # the class's method again
    d_ebm = torch.cat([(p.detach() - b).flatten() for p, b in zip(energy.parameters(), before)])
    d_hand = torch.cat([(p.detach() - b).flatten() for p, b in zip(hand.energy.parameters(), before)])
    buf_e = getattr(run.objective.generator, "x", None)
    return seen["loss/energy"], hand_loss, d_ebm, d_hand, buf_e, hand.buffer, ebm


def _agree(d_ebm, d_hand, lr) -> float:
    """Fraction of parameters whose update agrees to 2 % of the learning rate."""
    return ((d_ebm - d_hand).abs() <= 0.02 * lr).float().mean().item()


@pytest.fixture
def toy_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_TENSORBOARD", "0")
    run = ts.build_run(ts.WORKLOADS["toy"][0], tmp_path / "run")
    warm = ts.EbmSteps(run)
    warm.steps(3)  # the replay buffer holds 3 × 256 chain ends: its gather path is live
    yield run
    run.world.leave()


def test_hand_loop_matches_one_runner_step_toy(toy_run):
    run = toy_run
    lr = run.recipe.optim["energy"].lr
    assert int(run.objective.generator.count) == 3 * 256
    loss_e, loss_h, d_ebm, d_hand, buf_e, buf_h, _ = _one_step_each(run)
    assert torch.allclose(loss_e, loss_h, rtol=1e-4, atol=1e-5), (loss_e, loss_h)
    # the chain ends were scattered into the same slots, with the same values
    assert torch.allclose(buf_e, buf_h, atol=1e-4)
    assert d_ebm.abs().max() > 0.5 * lr  # Adam with β1 = 0 moves most parameters by about lr
    assert _agree(d_ebm, d_hand, lr) > 0.99


@pytest.mark.parametrize("mutant", ["no replay buffer", "chain climbs the energy", "no data noise"])
def test_a_different_algorithm_fails_the_check(toy_run, mutant):
    run = toy_run
    lr = run.recipe.optim["energy"].lr

    def mutate(hand):
        if mutant == "no replay buffer":
            hand.count = 0
        elif mutant == "chain climbs the energy":
            hand.step_size = -hand.step_size
        else:
            hand.data_noise = 0.0

    loss_e, loss_h, d_ebm, d_hand, *_ = _one_step_each(run, mutate)
    assert not (torch.allclose(loss_e, loss_h, rtol=1e-4, atol=1e-5) and _agree(d_ebm, d_hand, lr) > 0.99)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist)")
def test_hand_loop_matches_one_runner_step_fmnist(tmp_path, monkeypatch):
    """The image workload (uniform starts, clamped chains, no α), on a small batch."""
    monkeypatch.setenv("EBM_TENSORBOARD", "0")
    run = ts.build_run(ts.WORKLOADS["fmnist"][0], tmp_path / "run",
                       overrides=["data.limit=512", "data.batch_size=16"])
    try:
        ts.EbmSteps(run).steps(1)  # Adam past its first step
        lr = run.recipe.optim["energy"].lr
        loss_e, loss_h, d_ebm, d_hand, *_ = _one_step_each(run)
        assert torch.allclose(loss_e, loss_h, rtol=1e-4, atol=1e-5), (loss_e, loss_h)
        assert _agree(d_ebm, d_hand, lr) > 0.99
    finally:
        run.world.leave()


def test_hand_loop_settings_come_from_the_recipe(toy_run):
    hand = ts.hand_from_run(toy_run)
    assert (hand.n_steps, hand.step_size, hand.noise, hand.clamp) == (60, 0.01, math.sqrt(0.02), None)
    assert (hand.buffer_size, hand.reinit, hand.low, hand.high) == (10000, 0.05, -3.0, 3.0)
    assert (hand.alpha, hand.data_noise, hand.batch_size) == (0.1, 0.1, 256)
    group = hand.opt.param_groups[0]
    assert group["betas"] == (0.0, 0.999) and group["lr"] == 1e-3
    assert type(hand.energy) is type(toy_run.ctx.built["energy"]) and hand.energy is not toy_run.ctx.built["energy"]
    assert [p.shape for p in hand.energy.parameters()] == [p.shape for p in toy_run.ctx.built["energy"].parameters()]
