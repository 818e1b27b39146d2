"""EBGAN, BEGAN and MAGAN through the runner: the recipes run, k_t and the margin are
checkpointed and a resumed run continues them exactly, a noise generator is refused."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import tomli_w

from ebmcore.train import cli, run_recipe

TINY = {
    "run": {"seed": 0, "steps": 4, "checkpoint_every": 2, "log_every": 1, "eval_samples": 20},
    "data": {"type": "digits", "batch_size": 32},
    "energy": {"type": "autoencoder", "channels": 4, "code": 4, "norm": "l1"},
    "generator": {"type": "deconv", "latent_dim": 4, "channels": 4},
    "objective": {"type": "began", "lambda_k": 0.1},
    "optim": {"energy": {"lr": 1e-3}, "generator": {"lr": 1e-3}},
}
MAGAN = {**TINY, "objective": {"type": "magan", "warmup_steps": 1, "epoch_steps": 1}}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["ebgan", "began", "magan"])
def test_a_tiny_recipe_runs_through_ebm_run_and_is_scored(name, tmp_path, one_thread):
    recipe = {**TINY, "energy": {**TINY["energy"], "norm": "l2"}, "objective": {"type": name}}
    path, out = tmp_path / "r.toml", tmp_path / "run"
    path.write_bytes(tomli_w.dumps(recipe).encode())
    assert cli.main(["run", str(path), "--out", str(out), "--quiet", "--set", "run.steps=2"]) == 0
    records = _records(out)
    assert [r["step"] for r in records] == [1, 2]
    assert {"fd", "fd/heldout", "fd/noise", "classes/covered", "energy/data", "energy/sample"} <= set(records[-1])
    assert (out / "samples.png").stat().st_size > 0


@pytest.mark.parametrize(("recipe", "keys"), [(TINY, ["k"]), (MAGAN, ["margin", "step", "s_fake_previous", "epochs"])],
                         ids=["began", "magan"])
def test_k_and_the_margin_are_checkpointed_and_a_resumed_run_continues_them(recipe, keys, tmp_path, one_thread):
    run_recipe(recipe, out=str(tmp_path / "full"), progress=False)
    run_recipe({**recipe, "run": {**recipe["run"], "steps": 2}}, out=str(tmp_path / "resumed"), progress=False)
    run_recipe(recipe, out=str(tmp_path / "resumed"), resume=True, progress=False)
    full, resumed = (safetensors.torch.load_file(tmp_path / name / "checkpoints" / "step-000004.safetensors")
                     for name in ("full", "resumed"))
    for key in keys:
        assert full[f"model/{key}"].equal(resumed[f"model/{key}"]), key
    state = full[f"model/{keys[0]}"].item()
    assert 0 < state < 1  # moved from its start (k_0 = 0; the margin is set after the warm-up)
    metric = "began/k" if keys == ["k"] else "magan/margin"
    assert [r[metric] for r in _records(tmp_path / "full")] == [r[metric] for r in _records(tmp_path / "resumed")]


def test_a_noise_generator_is_refused_naming_it(tmp_path, capsys):
    recipe = {**TINY, "generator": {"type": "uniform"}}
    path = tmp_path / "r.toml"
    path.write_bytes(tomli_w.dumps(recipe).encode())
    assert cli.main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "objective 'began' needs a trainable generator" in err and "got UniformNoise" in err
    assert "Traceback" not in err
