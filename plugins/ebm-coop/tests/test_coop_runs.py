"""Cooperative runs end to end: a label-conditional run samples the label asked for."""

import pytest
import safetensors.torch
import torch

from ebmcore.train import cli, run_recipe

CONDITIONAL = {
    "run": {"seed": 0, "steps": 2, "checkpoint_every": 2, "eval_samples": 20},
    "data": {"type": "digits", "batch_size": 32, "conditional": True},
    "energy": {"type": "swish_cnn", "hidden": 8, "condition": "label"},
    "sampler": {"type": "langevin", "n_steps": 2, "step_size": 1.0, "noise": 0.01},
    "generator": {"type": "deconv", "latent_dim": 4, "channels": 4, "condition": "label"},
    "objective": {"type": "coop"},
    "optim": {"generator": {"lr": 1e-3}},
}


def test_sample_label_draws_that_class_and_refuses_bad_labels(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    run_recipe(CONDITIONAL, out=str(out), progress=False)
    seen = []
    from ebm_coop import Cooperative

    original = Cooperative.sample
    monkeypatch.setattr(Cooperative, "sample", lambda self, n, *, rng, cond=None:
                        seen.append(cond) or original(self, n, rng=rng, cond=cond))
    assert cli.main(["sample", str(out), "-n", "6", "--label", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert seen[-1].tolist() == [3] * 6
    assert safetensors.torch.load_file(tmp_path / "s.safetensors")["x"].shape == (6, 1, 8, 8)
    assert cli.main(["sample", str(out), "--label", "10"]) == 2
    assert "--label must be in 0..9, got 10" in capsys.readouterr().err


def test_label_on_an_unconditional_run_is_an_error(tmp_path, capsys):
    recipe = {**CONDITIONAL, "data": {"type": "digits", "batch_size": 32},
              "energy": {"type": "swish_cnn", "hidden": 8},
              "generator": {"type": "deconv", "latent_dim": 4, "channels": 4}}
    run_recipe(recipe, out=str(tmp_path / "run"), progress=False)
    assert cli.main(["sample", str(tmp_path / "run"), "--label", "1"]) == 2
    assert "is not a label-conditional model" in capsys.readouterr().err


def test_a_label_conditional_generator_on_unconditional_data_names_the_fix(tmp_path):
    recipe = {**CONDITIONAL, "data": {"type": "digits", "batch_size": 32}}
    with pytest.raises(Exception, match="set conditional = true in \\[data\\]"):
        run_recipe(recipe, out=str(tmp_path / "run"), progress=False)


def test_evaluating_during_training_does_not_change_the_model(tmp_path):
    """The deconv generator has BatchNorm: sampling in train mode would move its running
    statistics, so a run that evaluates often would end with another model."""
    recipe = {**CONDITIONAL, "data": {"type": "digits", "batch_size": 32},
              "energy": {"type": "swish_cnn", "hidden": 8},
              "generator": {"type": "deconv", "latent_dim": 4, "channels": 4}}
    recipe["run"] = {**recipe["run"], "steps": 4, "checkpoint_every": 4}
    often = {**recipe, "run": {**recipe["run"], "eval_every": 1, "sample_every": 1}}
    run_recipe(recipe, out=str(tmp_path / "once"), progress=False)
    run_recipe(often, out=str(tmp_path / "often"), progress=False)
    a = safetensors.torch.load_file(tmp_path / "once" / "checkpoints" / "step-000004.safetensors")
    b = safetensors.torch.load_file(tmp_path / "often" / "checkpoints" / "step-000004.safetensors")
    assert any("running_mean" in k for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
