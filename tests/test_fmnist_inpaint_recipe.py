"""recipes/fmnist-inpaint.toml through the command line: two steps, then its tasks, then `ebm eval`."""

import json
from pathlib import Path

import pytest
from support import ROOT, ebm

RECIPE = ROOT / "recipes" / "fmnist-inpaint.toml"
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
SMALL = ["--set", "run.steps=2", "--set", "run.eval_samples=64", "--set", "tasks.inpaint.n=16",
         "--set", "tasks.inpaint_mean.n=16", "--set", "tasks.denoise.n=16", "--set", "tasks.ood.n=100"]


@pytest.mark.slow  # the smoke test runs the recipe's two steps and tasks; `ebm eval` is tested on the toy
@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_fmnist_inpaint_runs_two_steps_with_its_tasks_and_eval_repeats_them(tmp_path):
    out = tmp_path / "run"
    # the first Fashion-MNIST run of a test session also trains the metrics classifier
    r = ebm("run", RECIPE, "--out", out, "--quiet", *SMALL, timeout=900)
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "tasks.json").read_text())
    assert set(results) == {"inpaint", "inpaint_mean", "denoise", "ood"}
    for label in ("inpaint", "inpaint_mean"):
        assert {"mse", "mse_mean_fill", "mse_noise_fill", "win_rate_vs_mean_fill"} <= set(results[label])
    assert {"mse_noisy", "mse", "mse_blur"} <= set(results["denoise"])
    assert {f"auroc/{s}" for s in ("digits", "noise", "flip", "gaussian")} <= set(results["ood"])
    assert all(0 <= v <= 1 for k, v in results["ood"].items() if k.startswith("auroc/"))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["inpaint/mse"] == results["inpaint"]["mse"]
    for picture in ("inpaint/inpaint.png", "inpaint_mean/inpaint.png", "denoise/denoise.png", "ood/ood.png"):
        assert (out / "tasks" / picture).exists()

    again = tmp_path / "again"
    r = ebm("eval", out, "--out", again)
    assert r.returncode == 0, r.stderr
    assert json.loads((again / "tasks.json").read_text()) == results
