"""Every recipe in recipes/ runs (two steps) and writes its outputs."""

import json
import tomllib
from pathlib import Path

import pytest
from ebm_image.idx import FASHION_ROOT
from support import ROOT, ebm

# the experiments users run, plus fixture recipes for components without an experiment yet
RECIPES = sorted((ROOT / "recipes").glob("*.toml")) + sorted((ROOT / "tests" / "fixtures" / "recipes").glob("*.toml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_two_steps(recipe, tmp_path):
    data = tomllib.loads(recipe.read_text())["data"]
    if data.get("name") == "fashion_mnist" and not (Path(FASHION_ROOT) / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "run"
    r = ebm("run", recipe, "--out", out, "--quiet", "--set", "run.steps=2", "--set", "run.eval_samples=16",
            timeout=900)  # the first Fashion-MNIST recipe also trains the metric classifier
    assert r.returncode == 0, r.stderr
    assert (out / "samples.png").exists() and (out / "samples.safetensors").exists()
    assert (out / "recipe.toml").exists() and (out / "metrics.jsonl").exists()
    if data["type"] in ("digits", "idx") and not data.get("exclude_classes"):
        last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        # labelled images are scored by the classifier: FD with its two yardsticks, coverage
        # (not with classes left out of training: their held-out split would count them)
        assert {"fd", "fd/heldout", "fd/noise", "classes/covered"} <= set(last), last
