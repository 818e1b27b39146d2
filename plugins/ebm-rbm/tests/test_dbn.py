"""Deep belief networks: the greedy layer schedule (across a resume), frozen layers under SGD
with momentum and weight decay, the variational bound against brute force on DBNs small
enough to enumerate, up-down samples against the exact marginal, and the refusals."""

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from ebm_image import DigitsConfig, DigitsData
from ebm_rbm import BernoulliRBM, DBNConfig, DeepBeliefNet, Gibbs
from ebm_rbm.dbn import bound_metrics
from ebm_rbm.partition import _states

from ebmcore import Batch, BuildContext, EbmError, RecipeError
from ebmcore.train import run_recipe
from ebmcore.train.distributed import World
from ebmcore.train.optimise import Optimisers
from ebmcore.train.recipe import OptimConfig


@pytest.fixture(scope="module")
def digits():
    return DigitsData.from_config(DigitsConfig(binarize="threshold", heldout=100))


def _ctx(data, **dbn):
    ctx = BuildContext(event_shape=data.event_shape, built={"data": data})
    ctx.built["energy"] = ctx.build("energy", "rbm", hidden=8)
    ctx.built["sampler"] = ctx.build("sampler", "gibbs")
    if dbn:
        ctx.built["objective"] = ctx.build("objective", "dbn", **dbn)
    return ctx


def test_the_schedule_gives_each_layer_its_updates_and_the_top_the_rest(digits):
    dbn = _ctx(digits, hidden=[4, 3], steps_per_layer=[3, 2, 1]).built["objective"]
    assert [dbn.layer_at(t) for t in range(9)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    same = _ctx(digits, hidden=[4, 3], steps_per_layer=[2]).built["objective"]
    assert [same.layer_at(t) for t in range(7)] == [0, 0, 1, 1, 2, 2, 2]
    assert [rbm.weight.shape for rbm in dbn.layers] == [(64, 8), (8, 4), (4, 3)]
    with pytest.raises(RecipeError, match=r"\$\.objective\.steps_per_layer: must be one positive number .* "
                                          r"each of the 3 layers"):
        _ctx(digits, hidden=[4, 3], steps_per_layer=[3, 2])


RECIPE = {
    "run": {"seed": 3, "steps": 9, "log_every": 1, "checkpoint_every": 4, "eval_samples": 16},
    "data": {"type": "digits", "binarize": "threshold", "batch_size": 20, "heldout": 0},  # no held-out split: nothing to score at the end
    # weights large enough that a Gibbs sweep does not forget where it started: chains lost on resume would show
    "energy": {"type": "rbm", "hidden": 8, "init_std": 0.5},
    "sampler": {"type": "gibbs"},
    "objective": {"type": "dbn", "hidden": [4, 3], "steps_per_layer": [3], "sample_steps": 2, "init_std": 0.5},
    "optim": {"layers": {"type": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-4}},
}


def _records(out):
    return {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def test_a_resumed_run_continues_the_right_layer_exactly(tmp_path, one_thread):
    run_recipe(RECIPE, out=tmp_path / "whole", progress=False)
    run_recipe(RECIPE, out=tmp_path / "cut", overrides=["run.steps=4"], progress=False)
    run_recipe(RECIPE, out=tmp_path / "cut", resume=True, progress=False)  # from the step-4 checkpoint
    whole, cut = _records(tmp_path / "whole"), _records(tmp_path / "cut")
    assert [whole[t]["dbn/layer"] for t in range(1, 10)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # the counter, the persistent chains and the optimizer state were all checkpointed
    assert all(cut[t]["loss/layers"] == whole[t]["loss/layers"] for t in range(1, 10))
    assert cut[9]["dbn/layer"] == 3


def _snapshot(dbn):
    return [[p.detach().clone() for p in rbm.parameters()] for rbm in dbn.layers]


def test_frozen_layers_do_not_move_under_sgd_with_momentum_and_weight_decay(digits):
    dbn = _ctx(digits, hidden=[4, 3], steps_per_layer=[2]).built["objective"]
    sgd = OptimConfig(type="sgd", lr=0.1, momentum=0.9, weight_decay=0.1)
    optimisers = Optimisers(dbn, {"layers": sgd}, World(), "fp32", torch.device("cpu"), "dbn")
    rng = torch.Generator().manual_seed(0)
    batch = Batch(digits.dataset().x[:20], None)
    for step in range(6):  # layers 1, 1, 2, 2, 3, 3: each has a momentum buffer when frozen
        before = _snapshot(dbn)
        optimisers.step(batch, rng, step + 1)
        after = _snapshot(dbn)
        for layer in range(3):
            moved = [not torch.equal(a, b) for a, b in zip(before[layer], after[layer], strict=True)]
            assert all(moved) if layer == step // 2 else not any(moved), (step, layer, moved)


def _bernoulli(x, logits):
    """log P(x) of independent Bernoulli units, summed over the last dimension."""
    return (x * logits - F.softplus(logits)).sum(-1)


def _random_dbn(sizes, seed=0):
    torch.manual_seed(seed)
    layers = [BernoulliRBM(d, h, init_std=1.5) for d, h in itertools.pairwise(sizes)]
    with torch.no_grad():
        for rbm in layers:
            rbm.visible_bias.normal_()
            rbm.hidden_bias.normal_()
    return layers


def _brute_force(layers, v):
    """Exact log p(v) and the exact bound E_q[log p(v, h) − log q(h | v)] of each row of v,
    summing over every state of every hidden layer of the directed part (float64)."""
    ps = [[t.detach().double() for t in rbm.params()] for rbm in layers]
    w, b, c = ps[-1]
    top_states = _states(w.shape[0])
    log_top = top_states @ b + F.softplus(top_states @ w + c).sum(-1) - _log_z(w, b, c)  # −F_L(h) − log Z_L
    joint, posterior = [], []
    for hs in itertools.product(*[_states(rbm.n_hidden) for rbm in layers[:-1]]):
        below, log_p, log_q = v, 0.0, 0.0  # hs: one state of each hidden layer below the top
        for (w_l, b_l, c_l), h in zip(ps[:-1], (h[None] for h in hs), strict=True):
            log_p = log_p + _bernoulli(below, b_l + h @ w_l.T)
            log_q = log_q + _bernoulli(h, below @ w_l + c_l)
            below = h.expand(len(v), -1)
        index = int((below[0] * (1 << torch.arange(below.shape[1]))).sum())  # its row of _states
        joint.append(log_p + log_top[index])
        posterior.append(log_q)
    joint, posterior = torch.stack(joint), torch.stack(posterior)
    bound = (posterior.exp() * (joint - posterior)).sum(0)
    return torch.logsumexp(joint, 0), bound


def _log_z(w, b, c):
    """log Σ_v Σ_h exp(vᵀb + hᵀc + vᵀWh) of an RBM, both layers enumerated."""
    v, h = _states(w.shape[0]), _states(w.shape[1])
    return torch.logsumexp((v @ b)[:, None] + v @ w @ h.T + (h @ c)[None], (0, 1))


@pytest.mark.parametrize("sizes", [(6, 3, 2), (6, 3, 2, 2)], ids=["2 layers", "3 layers"])
def test_the_bound_is_the_brute_force_formula_and_below_the_exact_log_likelihood(sizes):
    layers = _random_dbn(sizes)
    v = _states(6).float()
    log_p, bound = _brute_force(layers, v.double())
    assert (bound <= log_p + 1e-12).all() and float((log_p - bound).mean()) > 0.05  # a real gap
    train = torch.rand(500, 6, generator=torch.Generator().manual_seed(1)).round()
    m = bound_metrics(layers, v, train, samples=4000, chains=100, betas=1000, first_layer=True,
                      rng=torch.Generator().manual_seed(2))
    # the Monte Carlo estimate of the same formula, with the enumerated log Z of the top RBM
    assert abs(m["dbn/bound_nats_exact"] - float(bound.mean())) < 4 * m["dbn/bound_se"]
    assert m["dbn/bound_se"] < 0.01
    # with log Z by AIS: below the exact log-likelihood by more than its errors
    assert abs(m["dbn/log_z"] - m["dbn/log_z_exact"]) < 4 * m["dbn/log_z_se"] + 1e-3
    assert m["dbn/bound_nats"] < float(log_p.mean()) - 0.03
    # the first RBM alone, exactly, and the yardsticks
    w, b, c = (t.detach().double() for t in layers[0].params())
    h = _states(3)
    rbm1 = torch.logsumexp((v.double() @ b)[:, None] + v.double() @ w @ h.T + (h @ c)[None], 1) - _log_z(w, b, c)
    assert m["rbm1/nats_exact"] == pytest.approx(float(rbm1.mean()), abs=1e-9)
    assert m["nats/uniform"] == pytest.approx(-6 * math.log(2))


def test_up_down_samples_follow_the_exact_marginal_of_the_dbn(one_thread):
    layers = _random_dbn((4, 3, 2), seed=1)
    dbn = DeepBeliefNet(layers, Gibbs(n_steps=1), (1, 2, 2),
                        DBNConfig(hidden=(2,), sample_steps=30, pixels="sample", sample_start="noise"))
    n = 20_000
    x = dbn.sample(n, rng=torch.Generator().manual_seed(3))
    assert x.shape == (n, 1, 2, 2) and bool(((x == 0) | (x == 1)).all())
    exact = _brute_force(layers, _states(4))[0].exp()
    codes = (x.flatten(1).long() * (1 << torch.arange(4))).sum(1)
    counts = torch.bincount(codes, minlength=16).double()
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-9)
    chi2 = float(((counts - n * exact) ** 2 / (n * exact)).sum())
    assert chi2 < 37.7  # the 0.999 quantile of χ² with 15 degrees of freedom
    means = DeepBeliefNet(layers, Gibbs(n_steps=1), (4,), DBNConfig(hidden=(2,), sample_steps=3)).sample(
        50, rng=torch.Generator().manual_seed(4))
    assert means.shape == (50, 4) and bool(((means > 0) & (means < 1)).all())  # P(v = 1 | h₁)


def test_refusals_name_what_is_wrong(digits):
    ctx = _ctx(digits)
    ctx.built["generator"] = ctx.build("generator", "data")
    with pytest.raises(EbmError, match=r"keeps its own chains per layer.*remove the \[generator\]"):
        ctx.build("objective", "dbn")
    ctx = _ctx(digits)
    ctx.built["sampler"] = ctx.build("sampler", "gibbs", probabilities=True)
    with pytest.raises(EbmError, match="persistent chains must stay draws"):
        ctx.build("objective", "dbn")
    assert ctx.build("objective", "dbn", negatives="cd").c.negatives == "cd"
    ctx.built["energy"] = ctx.build("energy", "gaussian_rbm", hidden=8)
    with pytest.raises(EbmError, match="must be an 'rbm' \\(layer 1\\); got GaussianRBM"):
        ctx.build("objective", "dbn")
    ctx = _ctx(digits)
    ctx.built["generator"] = ctx.build("generator", "data")
    ctx.built["objective"] = ctx.build("objective", "mle")
    with pytest.raises(EbmError, match="task 'dbn_bound' bounds .* the objective is a MaximumLikelihood"):
        ctx.build("task", "dbn_bound")
    with pytest.raises(RecipeError, match=r"\$\.objective\.hidden: must be a non-empty list"):
        _ctx(digits, hidden=[])
