"""Every recipe in recipes/ runs (two steps) and writes its outputs, in this process (the
command line is tested elsewhere; a process each cost 2.6 s of start-up per recipe), and
its run reopens as one object (``ebmcore.load``) with the checkpoint's weights and seeded
samples."""

import json
import tomllib
from pathlib import Path

import pytest
import safetensors.torch
import torch
from ebm_image.idx import FASHION_ROOT
from ebm_trajectory.data import BVH_FOLDER
from ebm_trajectory.data import NAMED as NAMED_CLIPS
from ebm_video.data import NAMED as NAMED_VIDEOS
from support import ROOT

import ebmcore
from ebmcore.train import run_recipe

# the experiments users run, plus fixture recipes for components without an experiment yet;
# the texture recipes run two steps, with more checks, in their own tests
COVERED = {"texture-frame", "texture-multigrid"}
RECIPES = [r for r in sorted((ROOT / "recipes").glob("*.toml")) if r.stem not in COVERED] + sorted(
    (ROOT / "tests" / "fixtures" / "recipes").glob("*.toml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_two_steps(recipe, tmp_path):
    data = tomllib.loads(recipe.read_text())["data"]
    if data.get("name") == "fashion_mnist" and not (Path(FASHION_ROOT) / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    if data["type"] == "video" and data.get("name") in NAMED_VIDEOS and not NAMED_VIDEOS[data["name"]][0].exists():
        pytest.skip(f"the video '{data['name']}' is not installed (apt-get install {NAMED_VIDEOS[data['name']][1]})")
    if data["type"] == "mocap" and data.get("name") in NAMED_CLIPS and not (BVH_FOLDER / NAMED_CLIPS[data["name"]][0]).exists():
        pytest.skip(f"the clips '{data['name']}' are not installed (apt-get install assimp-testmodels)")
    out = tmp_path / "run"
    overrides = ["run.steps=2", "run.eval_samples=16"]
    if "sample_steps" in tomllib.loads(recipe.read_text())["objective"]:  # evaluation chains: pictures only
        overrides.append("objective.sample_steps=10")
    for label, task in tomllib.loads(recipe.read_text()).get("tasks", {}).items():
        if task["type"] == "loglik":  # a short path and grid: the task's numbers are tested in its plugin
            overrides += [f"tasks.{label}.betas=10", f"tasks.{label}.chains=16", f"tasks.{label}.settle_steps=2",
                          f"tasks.{label}.grid=50"]
        if task["type"] == "dbn_bound":  # a short AIS path, one draw of h₁
            overrides += [f"tasks.{label}.betas=10", f"tasks.{label}.chains=16", f"tasks.{label}.samples=1"]
        if task["type"] == "recover":  # a few clips, short chains
            overrides += [f"tasks.{label}.n=4"]
            if task.get("by") != "objective":  # an objective's completion keeps its own length
                overrides += [f"tasks.{label}.n_steps=5"]
        if task["type"] == "classify":  # a part of the test split and of each OOD set
            overrides += [f"tasks.{label}.n=500", f"tasks.{label}.ood_n=100"]
        if task["type"] in ("class_accuracy", "revision", "reconstruction"):  # a few images
            overrides += [f"tasks.{label}.n=40"]
        if task["type"] in ("patch_synthesis", "patch_inpaint"):  # one image a size
            overrides += [f"tasks.{label}.n=1"]
        if task["type"] in ("voxel_recover", "voxel_superres", "pointcloud_reconstruct"):  # few, short chains
            overrides += [f"tasks.{label}.n=4"]
            if task.get("by") != "objective":  # an objective's completion keeps its own length
                overrides += [f"tasks.{label}.n_steps=5"]
        if task["type"] == "voxel_probe":  # two samples a class, a short probe fit
            overrides += [f"tasks.{label}.per_class=2", f"tasks.{label}.iterations=20"]
        if task["type"] == "forecast":  # a few windows, short chains (none where it only ranks its starts)
            overrides += [f"tasks.{label}.n=8", f"tasks.{label}.k=2"]
            overrides += [f"tasks.{label}.n_steps=3"] if task.get("n_steps") != 0 else []
        if task["type"] in ("inpaint", "denoise"):  # a few images
            overrides += [f"tasks.{label}.n=16"]
        if task["type"] == "ood":  # a part of the test split
            overrides += [f"tasks.{label}.n=100"]
        if task["type"] == "generator_chains":  # one draw of a few short chains
            overrides += [f"tasks.{label}.n=16", f"tasks.{label}.n_steps=3", f"tasks.{label}.draws=1"]
        if task["type"] == "plan":  # a few scenes, short chains
            overrides += [f"tasks.{label}.n=8", f"tasks.{label}.n_steps=3"]
    if tomllib.loads(recipe.read_text()).get("sampler", {}).get("type") == "patch_pyramid":  # short chains, 4 samples
        overrides += ["sampler.n_steps=3", "run.eval_samples=4"]
    if tomllib.loads(recipe.read_text())["energy"].get("type") == "tilted_flow":  # a few steps fit its flow
        overrides.append("energy.flow_steps=20")
    # the first Fashion-MNIST recipe also trains the metric classifier
    threads = torch.get_num_threads()
    try:
        run_recipe(recipe, out=str(out), overrides=overrides, progress=False)
        model = ebmcore.load(out)  # which sets run.threads again
        saved = safetensors.torch.load_file(out / "checkpoints" / f"step-{model.step:06d}.safetensors")
        state = model.objective.state_dict()
        assert model.step == 2 and state.keys() == {k[len("model/"):] for k in saved if k.startswith("model/")}
        assert all(torch.equal(v, saved["model/" + k]) for k, v in state.items())
        assert torch.equal(model.sample(3, seed=1), model.sample(3, seed=1))
    finally:
        torch.set_num_threads(threads)  # run.threads is process-wide: the tests after keep theirs
    assert (out / "samples.png").exists() and (out / "samples.safetensors").exists()
    assert (out / "recipe.toml").exists() and (out / "metrics.jsonl").exists()
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    if data["type"] in ("digits", "idx") and not data.get("exclude_classes"):
        # labelled images are scored by the classifier: FD beside its yardsticks, coverage
        # (not with classes left out of training: their held-out split would count them)
        assert {"fd", "fd/heldout", "fd/noise", "fd/gaussian", "fd/vs_gaussian", "classes/covered"} <= set(last)
    if data["type"] == "toy2d":
        assert {"mmd2", "mmd2/heldout", "mmd2/noise", "mmd2/gaussian", "mmd2/vs_gaussian"} <= set(last)
