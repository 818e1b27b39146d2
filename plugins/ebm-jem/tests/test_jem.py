"""JEM's loss against known answers, the calibration and OOD numbers of ``classify`` on
constructed examples, refusals of what JEM cannot train, and an exact resume."""

import json
import math

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from ebm_jem import (
    JEM,
    Classify,
    ClassifyConfig,
    calibration_bins,
    class_energies,
    expected_calibration_error,
)

from ebmcore import Batch, BuildContext, Condition, EbmError, Energy
from ebmcore.train import run_recipe

TINY = {
    "run": {"seed": 0, "steps": 4, "checkpoint_every": 2, "log_every": 1, "eval_samples": 20,
            "on_divergence": "rollback"},
    "data": {"type": "digits", "batch_size": 16, "conditional": True},
    "energy": {"type": "swish_cnn", "hidden": 8, "condition": "label"},
    "sampler": {"type": "langevin", "n_steps": 3, "step_size": 1.0, "noise": 0.01, "clamp": [-1.0, 1.0]},
    "generator": {"type": "replay_buffer", "size": 64, "reinit": 0.05},
    "objective": {"type": "jem", "alpha": 0.1, "sample_steps": 3, "eval_chains": "persistent"},
    "optim": {"energy": {"lr": 1e-3, "warmup_steps": 3}},
}


def _parts(weight=1.0, alpha=0.0, steps=3, chains=None):
    ctx = BuildContext(event_shape=(1, 8, 8), num_classes=10)
    energy = ctx.build("energy", "swish_cnn", hidden=8, condition="label")
    sampler = ctx.build("sampler", "langevin", n_steps=steps, step_size=1.0, noise=0.01, clamp=[-1.0, 1.0])
    ctx.built["energy"] = energy
    generator = ctx.build("generator", "replay_buffer", size=64, reinit=0.05)
    return JEM(energy, sampler, generator, generative_weight=weight, alpha=alpha, chains=chains), energy, generator


def _batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g))


def _head(energy, x):
    """The head's outputs, −f(x): what the label-conditional energy is made of."""
    return energy.head(energy.features(x).flatten(1))


def test_class_energies_are_the_heads_outputs_and_the_marginal_is_minus_logsumexp_of_the_logits():
    _, energy, _ = _parts()
    x, _ = _batch()
    out = _head(energy, x)
    assert torch.allclose(class_energies(energy, x, 10), out, atol=1e-6)
    assert torch.allclose(energy(x), -torch.logsumexp(-out, 1), atol=1e-6)


def test_weight_zero_is_the_cross_entropy_of_the_logits_and_runs_no_chain():
    jem, energy, generator = _parts(weight=0.0)
    x, y = _batch()
    losses, metrics = jem.loss(Batch(x, y), rng=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(-_head(energy, x), y)
    assert torch.allclose(losses["energy"], expected, atol=1e-6)
    assert torch.allclose(metrics["loss/ce"], expected, atol=1e-6)
    assert generator._count == 0 and "loss/cd" not in metrics  # no SGLD, no buffer writes


@pytest.mark.parametrize("chains", [None, 5])
def test_generative_part_is_data_energy_minus_sample_energy_plus_the_magnitude_term(chains):
    jem, energy, generator = _parts(weight=0.5, alpha=0.1, chains=chains)
    x, y = _batch()
    losses, metrics = jem.loss(Batch(x, y), rng=torch.Generator().manual_seed(1))
    n_neg = chains or len(x)
    x_neg = generator.x[:n_neg]  # the chain ends the step wrote back
    assert generator._count == n_neg
    e_pos, e_neg = energy(x), energy(x_neg)
    cd = e_pos.mean() - e_neg.mean()
    generative = cd + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    assert torch.allclose(metrics["loss/cd"], cd, atol=1e-5)
    assert torch.allclose(losses["energy"], F.cross_entropy(-_head(energy, x), y) + 0.5 * generative, atol=1e-5)
    assert not torch.equal(x_neg, torch.zeros_like(x_neg))


def test_conditional_samples_follow_the_label_energy():
    jem, _, _ = _parts(steps=5)
    y = torch.arange(10)
    a = jem.sample(10, rng=torch.Generator().manual_seed(0), cond=y)
    b = jem.sample(10, rng=torch.Generator().manual_seed(0), cond=(y + 1) % 10)
    assert a.shape == (10, 1, 8, 8) and not torch.equal(a, b)  # same start and noise, other target


def test_ece_on_a_constructed_example():
    # bin (0.867, 0.933]: confidence 0.9, accuracy 1/2; bin (0.533, 0.6]: confidence 0.6, accuracy 1
    conf, right = torch.tensor([0.9, 0.9, 0.6, 0.6]), torch.tensor([True, False, True, True])
    assert expected_calibration_error(conf, right) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    count, _, _ = calibration_bins(torch.tensor([1.0, 0.25, 0.0]), torch.tensor([True, True, True]), bins=4)
    assert count[-1] == 1 and count[0] == 2  # 1 in the last bin, bin edges right-closed
    # exactly calibrated: in every bin the accuracy is the confidence
    conf = torch.tensor([0.75] * 4 + [0.25] * 4)  # binary fractions: no rounding
    right = torch.tensor([True] * 3 + [False] + [True] + [False] * 3)
    assert expected_calibration_error(conf, right) == pytest.approx(0.0, abs=1e-12)


class _Peaked(Energy):
    """−f(x) = −10·mean(x) for class 0, 0 for the others: bright images are confident class 0."""

    condition = Condition.LABEL

    def forward(self, x, cond=None):
        out = torch.zeros(len(x), 10)
        out[:, 0] = -10 * x.flatten(1).mean(1)
        if cond is None:
            return -torch.logsumexp(-out, 1)
        return out.gather(1, cond.long().view(-1, 1)).squeeze(1)


class _Held:
    def __init__(self, x, y):
        self.batch = Batch(x, y)

    def heldout(self):
        return self.batch


def test_classify_scores_in_distribution_above_noise_by_both_scores(tmp_path):
    energy = _Peaked()
    x = torch.full((40, 1, 8, 8), 0.9)
    data = _Held(x, torch.zeros(40, dtype=torch.long))
    ctx = BuildContext(event_shape=(1, 8, 8), num_classes=10, built={"energy": energy})
    task = Classify.from_config(ClassifyConfig(sets=("noise", "flip"), ood_n=40), ctx)
    m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    confidence = math.exp(9) / (math.exp(9) + 9)
    assert m["accuracy"] == 1.0 and m["ece"] == pytest.approx(1 - confidence, rel=1e-3)  # float32 softmax
    assert m["auroc_logsumexp/noise"] == 1.0 and m["auroc_max_softmax/noise"] == 1.0
    assert m["auroc_logsumexp/flip"] == 0.5 and m["auroc_max_softmax/flip"] == 0.5  # a flip keeps mean(x)
    assert (tmp_path / "reliability.png").stat().st_size > 0


def test_an_unconditional_energy_and_unlabelled_data_are_refused_naming_the_key(tmp_path, one_thread):
    with pytest.raises(EbmError, match=r'energy\.condition = "label"'):
        run_recipe({**TINY, "energy": {"type": "swish_cnn", "hidden": 8}}, out=str(tmp_path / "a"), progress=False)
    with pytest.raises(EbmError, match=r"data\.conditional = true"):
        run_recipe({**TINY, "data": {"type": "digits", "batch_size": 16}}, out=str(tmp_path / "b"), progress=False)


def test_a_resumed_run_continues_exactly_with_the_tasks(tmp_path, one_thread):
    tasks = {"classify": {"type": "classify", "sets": ["noise"], "ood_n": 50, "n": 100}}
    recipe = {**TINY, "tasks": tasks}
    run_recipe(recipe, out=str(tmp_path / "full"), progress=False)
    run_recipe({**recipe, "run": {**recipe["run"], "steps": 2}}, out=str(tmp_path / "resumed"), progress=False)
    run_recipe(recipe, out=str(tmp_path / "resumed"), resume=True, progress=False)
    full, resumed = (safetensors.torch.load_file(tmp_path / name / "checkpoints" / "step-000004.safetensors")
                     for name in ("full", "resumed"))
    assert full.keys() == resumed.keys() and all(full[k].equal(resumed[k]) for k in full)
    assert full["model/generator.count"].item() == 4 * 16  # the buffer is checkpointed and filled
    last = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss/ce", "loss/cd", "classify/accuracy", "classify/ece", "classify/auroc_logsumexp/noise",
            "classify/auroc_max_softmax/noise"} <= set(last)


def test_an_unknown_ood_set_is_refused_by_the_ood_task_naming_the_key():
    ctx = BuildContext(event_shape=(1, 8, 8), num_classes=10, built={"energy": _Peaked()})
    with pytest.raises(EbmError, match=r"tasks\.ood\.sets: must be distinct names from digits.*'mnist'"):
        Classify.from_config(ClassifyConfig(sets=("mnist",)), ctx)
