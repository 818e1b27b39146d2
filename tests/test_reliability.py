"""Reliability (issue 7): the divergence policy, observer plugins that raise, pickles refused,
exact resume for every objective."""

import copy
import json
import math
import pickle
import re

import pytest
import safetensors.torch
import torch
from support import ROOT, ebm, write_recipe

from ebmcore import DivergenceError, default_host, hookimpl
from ebmcore.errors import pickle_format
from ebmcore.plugins import PluginHost
from ebmcore.train import checkpoint, cli, run_recipe
from ebmcore.train.run import Run


class StepRecorder:
    """An observer that reads every step's metrics (forcing a sync: fine in a test)."""

    __name__ = "step_recorder"

    def __init__(self):
        self.steps = []

    @hookimpl
    def ebm_step_end(self, run, step, metrics):
        self.steps.append((step, {k: v.item() for k, v in metrics.items()}))

    def first_bad(self, limit=math.inf):
        for step, m in self.steps:
            if any(not math.isfinite(v) or (k.startswith("energy/") and abs(v) > limit) for k, v in m.items()):
                return step
        return None


def _diverging(tiny, **run):
    """Without the energy regulariser and with a huge learning rate, the MLP energy blows up."""
    tiny["objective"]["alpha"] = 0.0
    tiny["optim"]["energy"]["lr"] = 100.0
    tiny["run"].update(steps=200, log_every=50, checkpoint_every=5, **run)
    return tiny


def test_divergence_stops_at_the_first_non_finite_step_naming_it(tmp_path, tiny):
    recorder = StepRecorder()
    host = PluginHost(plugins=[recorder])
    with pytest.raises(DivergenceError) as err:
        # log_every = 50: the stop does not wait for a logging step
        run_recipe(_diverging(tiny), out=str(tmp_path / "run"), host=host, progress=False)
    bad = recorder.first_bad()
    assert bad is not None and bad < 50
    m = re.match(r"training diverged at step (\d+): non-finite (.+); stopped, the last good checkpoint is "
                 r"step (\d+)", str(err.value))
    assert m, err.value
    assert int(m.group(1)) == bad and recorder.steps[-1][0] == bad  # stopped at that very step
    named = [k for k, v in recorder.steps[-1][1].items() if not math.isfinite(v)]
    assert all(k in m.group(2) for k in named)
    assert int(m.group(3)) == (bad - 1) // 5 * 5  # the last checkpoint before it is kept
    run = Run.open(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in run.objective.state_dict().values() if v.is_floating_point())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if (tmp_path / "run" / "metrics.jsonl").exists() else []
    assert all(json.loads(x)["step"] < bad for x in lines)


def test_an_energy_above_max_abs_energy_stops_the_run_naming_it(tmp_path, tiny):
    recorder = StepRecorder()
    host = PluginHost(plugins=[recorder])
    with pytest.raises(DivergenceError, match=r"\|energy/\w+\| = [0-9.e+]+ .*above run.max_abs_energy = 1000"
                       ) as err:
        run_recipe(_diverging(tiny, max_abs_energy=1e3), out=str(tmp_path / "run"), host=host, progress=False)
    bad = recorder.first_bad(limit=1e3)
    assert str(err.value).startswith(f"training diverged at step {bad}:") and recorder.steps[-1][0] == bad


def test_divergence_in_the_command_line_exits_1(tmp_path, tiny):
    r = ebm("run", write_recipe(tmp_path / "r.toml", _diverging(tiny)), "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 1 and "error: training diverged at step" in r.stderr and "Traceback" not in r.stderr


def test_rollback_reloads_the_last_good_checkpoint_lowers_the_lr_and_finishes(tmp_path, tiny):
    _diverging(tiny, on_divergence="rollback", rollback_lr_factor=1e-5)  # 100 → 1e-3
    tiny["run"].update(steps=30)
    out = tmp_path / "run"
    record = run_recipe(tiny, out=str(out), progress=False)
    assert record["step"] == 30 and all(math.isfinite(v) for v in record.values())
    meta = json.loads((out / "checkpoints" / "step-000030.json").read_text())
    (rb,) = meta["rollbacks"]
    assert rb["to"] == (rb["step"] - 1) // 5 * 5 and rb["lr_scale"] == pytest.approx(1e-5)
    assert "non-finite" in rb["why"]
    assert meta["optim"]["energy"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # rolled-back records are gone
    # a rolled-back run resumes exactly: crash it after the rollback, resume, compare
    crashed = tmp_path / "crashed"
    with pytest.raises(_Crash):
        run_recipe(tiny, out=str(crashed), host=PluginHost(plugins=[CrashAt(27)]), progress=False)
    assert _no_time(run_recipe(tiny, out=str(crashed), resume=True, progress=False)) == _no_time(record)
    assert _metrics(crashed) == _metrics(out)


def test_rollbacks_are_bounded(tmp_path, tiny):
    _diverging(tiny, on_divergence="rollback", rollback_lr_factor=0.9, max_rollbacks=2)
    with pytest.raises(DivergenceError, match=r"after 2 rollbacks, run.max_rollbacks\); stopped"):
        run_recipe(tiny, out=str(tmp_path / "run"), progress=False)


@pytest.mark.parametrize("schedule, total, expected", [
    ({"warmup_steps": 4}, None, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),
    ({"cooldown_steps": 3}, 6, [1.0, 1.0, 1.0, 1.0, 2 / 3, 1 / 3]),
    ({"warmup_steps": 2, "cooldown_steps": 2}, 3, [0.5, 1.0, 0.5]),
])
def test_warmup_and_cooldown_scale_the_learning_rate_and_keep_the_configured_one(schedule, total, expected):
    from ebmcore import Objective
    from ebmcore.train.distributed import World
    from ebmcore.train.optimise import Optimisers
    from ebmcore.train.recipe import OptimConfig

    class Sum(Objective):  # the gradient is 1 everywhere: each SGD step moves w by −lr
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def param_groups(self):
            return {"w": self}

        def loss(self, batch, *, rng):
            return {"w": self.w}, {}

    objective = Sum()
    optimisers = Optimisers(objective, {"w": OptimConfig(type="sgd", lr=1.0, **schedule)}, World(), "fp32",
                            torch.device("cpu"), "sum", total_steps=total)
    moves = []
    for update in range(1, len(expected) + 1):
        before = objective.w.item()
        optimisers.step(None, torch.Generator(), update)
        moves.append(before - objective.w.item())
        assert optimisers.groups["w"][0].param_groups[0]["lr"] == 1.0  # what a checkpoint holds
    assert moves == pytest.approx(expected)


@pytest.mark.parametrize("key, value", [("on_divergence", "retry"), ("max_abs_energy", -1.0),
                                        ("rollback_lr_factor", 1.0), ("rollback_lr_factor", 0.0),
                                        ("max_rollbacks", 0)])
def test_divergence_keys_are_validated(tmp_path, tiny, key, value, capsys):
    tiny["run"][key] = value
    assert cli.main(["validate", str(write_recipe(tmp_path / "r.toml", tiny))]) == 2
    assert f"$.run.{key}" in capsys.readouterr().err


# -- observer plugins that raise ------------------------------------------------------------

class _Crash(BaseException):
    """A crash in the middle of a run (not an Exception: hooks let it through)."""


class CrashAt:
    __name__ = "crash_at"

    def __init__(self, step):
        self.step = step

    @hookimpl
    def ebm_step_end(self, run, step, metrics):
        if step == self.step:
            raise _Crash(step)


class Broken:
    __name__ = "broken_observer"

    def __init__(self):
        self.calls = 0

    @hookimpl
    def ebm_step_end(self, run, step, metrics):
        self.calls += 1
        raise ValueError("observer bug")

    @hookimpl
    def ebm_log(self, run, step, record):
        raise KeyError("no such metric")

    @hookimpl
    def ebm_run_start(self, run):
        raise SystemExit(0)  # a plugin cannot end the run either


def test_an_observer_that_raises_is_reported_once_and_the_run_continues(tmp_path, tiny, capsys):
    broken, recorder = Broken(), StepRecorder()
    host = PluginHost(plugins=[broken, recorder])
    record = run_recipe(tiny, out=str(tmp_path / "run"), host=host, progress=False)
    assert record["step"] == 30 and len(recorder.steps) == 30  # the other observer saw every step
    assert broken.calls == 1  # reported once, then not called again in this run
    err = capsys.readouterr().err
    assert err.count("warning: plugin 'broken_observer' from '(object broken_observer)' raised in "
                     "ebm_step_end: ValueError: observer bug") == 1
    assert err.count("raised in ebm_log: KeyError") == 1
    assert err.count("raised in ebm_run_start: SystemExit: 0") == 1
    # the metrics are those of a run without the broken plugin
    run_recipe(tiny, out=str(tmp_path / "clean"), progress=False)
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "clean")


def test_hook_faults_name_the_distribution():
    host = default_host()
    faults = []
    host.notify("ebm_run_end", faults=faults, run=None, record={})  # bundled plugins: no observers
    assert faults == []
    host = PluginHost(plugins=[Broken()], autoload=False)
    host.notify("ebm_log", faults=faults, run=None, step=1, record={})
    assert [(f.name, f.distribution, f.hook) for f in faults] == [
        ("broken_observer", "(object broken_observer)", "ebm_log")]


# -- pickles are refused ------------------------------------------------------------------

def _pickles(tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    p0 = tmp_path / "old.pkl"
    p0.write_bytes(pickle.dumps({"w": 1}, protocol=0))
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pt)
    return [p, p0, pt]


def test_pickle_formats_are_recognised(tmp_path):
    kinds = [pickle_format(p.read_bytes()) for p in _pickles(tmp_path)]
    assert kinds[0].startswith("a pickle") and kinds[1] == "a pickle (protocol 0 or 1)"
    assert kinds[2] == "a zip archive (the format of torch.save)"
    assert pickle_format(safetensors.torch.save({"x": torch.ones(2)})) is None
    assert pickle_format((ROOT / "tests" / "fixtures" / "recipes" / "stripes-multigrid.toml").read_bytes()) is None


def test_a_pickle_given_as_a_run_directory_or_recipe_is_refused(tmp_path, capsys):
    for path in _pickles(tmp_path):
        for command in ("sample", "eval", "run", "validate"):
            assert cli.main([command, str(path)]) == 2
            err = capsys.readouterr().err
            assert f"error: {path}: this is a" in err and "never loads pickle files: unpickling runs" in err, err


def test_a_pickle_in_a_checkpoint_folder_is_refused(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    ckpts = out / "checkpoints"
    # a pickle under the checkpoint's name, with a sidecar whose hash matches it
    blob = pickle.dumps({"model/w": [1.0]})
    side = json.loads((ckpts / "step-000030.json").read_text())
    side["sha256"] = checkpoint._digest(blob, side)
    (ckpts / "step-000030.safetensors").write_bytes(blob)
    (ckpts / "step-000030.json").write_text(json.dumps(side))
    assert cli.main(["sample", str(out), "-n", "4"]) == 2
    assert "step-000030.safetensors: this is a pickle" in capsys.readouterr().err
    # only pickled checkpoints in the folder
    for p in ckpts.iterdir():
        p.unlink()
    torch.save({"w": torch.ones(2)}, ckpts / "step-000030.pt")
    assert cli.main(["sample", str(out), "-n", "4"]) == 2
    assert "step-000030.pt will not be loaded: ebm never loads pickle" in capsys.readouterr().err


# -- exact resume for every objective --------------------------------------------------------

def _objective_recipes(tiny):
    """A tiny recipe for every bundled objective (a new objective must be added here)."""
    import tomllib

    stripes = tomllib.loads((ROOT / "tests" / "fixtures" / "recipes" / "stripes-multigrid.toml").read_text())
    stripes["run"].update(steps=8, log_every=1, checkpoint_every=3, sample_every=0, eval_samples=8)
    stripes["data"]["batch_size"] = 16
    stripes["sampler"]["n_steps"] = 4
    mle = copy.deepcopy(tiny)
    mle["run"].update(steps=12, log_every=1, checkpoint_every=4)
    mle["optim"]["energy"]["warmup_steps"] = 16  # the crash and the resume fall inside the warm-up
    recipes = {"mle": mle, "mle_multiscale": stripes}
    for name in ("coop", "coop_vae"):  # two parameter groups; BatchNorm-free MLP generator
        coop = copy.deepcopy(mle)
        coop["generator"] = {"type": "mlp", "latent_dim": 2, "hidden": 16, "encoder": name == "coop_vae"}
        coop["objective"] = {"type": name, "alpha": 0.1}
        coop["optim"]["generator"] = {"type": "adam", "lr": 1e-3}
        recipes[name] = coop
    triangle = copy.deepcopy(recipes["coop_vae"])  # generator and encoder in one group; revision on
    triangle["objective"] = {"type": "triangle", "alpha": 0.1, "latent_weight": 0.1, "revise_steps": 2,
                             "sample_steps": 2}
    recipes["triangle"] = triangle

    recipes["jem"] = {  # labelled digits, a label-conditional energy; the crash falls in the warm-up
        "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "eval_samples": 16},
        "data": {"type": "digits", "batch_size": 16, "conditional": True},
        "energy": {"type": "swish_cnn", "hidden": 8, "condition": "label"},
        "sampler": {"type": "langevin", "n_steps": 3, "step_size": 1.0, "noise": 0.01, "clamp": [-1.0, 1.0]},
        "generator": {"type": "replay_buffer", "size": 64, "reinit": 0.05},
        "objective": {"type": "jem", "alpha": 0.1, "sample_steps": 3, "eval_chains": "persistent"},
        "optim": {"energy": {"lr": 1e-3, "warmup_steps": 8}}}
    nce = copy.deepcopy(mle)
    del nce["generator"]
    nce["objective"] = {"type": "nce", "noise_ratio": 2}
    fce = copy.deepcopy(nce)
    fce["objective"] = {"type": "fce", "flow_layers": 2, "flow_hidden": [16]}  # both players every step
    fce["optim"]["flow"] = {"type": "adam", "lr": 1e-3}
    recipes.update(nce=nce, fce=fce)
    snis = copy.deepcopy(nce)  # a flow fitted at build time (seeded: the resumed run refits the same)
    snis["energy"] = {"type": "tilted_flow", "tilt_options": {"hidden": [16]}, "flow_layers": 2,
                      "flow_hidden": [16], "flow_steps": 3}
    snis["objective"] = {"type": "snis_mle", "proposals": 32}
    recipes["snis_mle"] = snis
    masked = copy.deepcopy(nce)  # no generator: the hidden entries start from uniform noise
    masked["objective"] = {"type": "masked_mle", "share": 0.5}
    recipes["masked_mle"] = masked
    recipes["conditional_mle"] = {  # the observed part of each window travels as cond
        "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "eval_samples": 8},
        "data": {"type": "navigation", "n": 16, "heldout": 8, "length": 6, "obstacles": 1, "batch_size": 8},
        "energy": {"type": "scene_cost", "channels": [4], "hidden": [4]},
        "sampler": {"type": "langevin", "n_steps": 3, "step_size": 0.01, "noise": 0.005},
        "objective": {"type": "conditional_mle", "start_noise": 0.05},
        "optim": {"energy": {"lr": 1e-3}}}
    retrieval = copy.deepcopy(recipes["conditional_mle"])  # no sampler: candidates are retrieved
    del retrieval["sampler"]
    retrieval["objective"] = {"type": "retrieval_nce", "k": 3}
    recipes["retrieval_nce"] = retrieval
    recipes["point_completion_dsm"] = {  # no sampler: a denoising step completes
        "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "eval_samples": 4},
        "data": {"type": "pointclouds", "points": 16, "n": 12, "heldout": 4, "batch_size": 4},
        "energy": {"type": "point_field", "point_layers": [8], "code": 8, "field_layers": [8]},
        "objective": {"type": "point_completion_dsm"},
        "optim": {"energy": {"lr": 1e-3}}}
    recipes["clip_completion_dsm"] = {  # no sampler: a denoising step recovers
        "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "eval_samples": 4},
        "data": {"type": "moving_digits", "n": 8, "heldout": 4, "size": 12, "digit": 6, "clip": 5, "batch_size": 4},
        "energy": {"type": "clip_field", "channels": [4]},
        "objective": {"type": "clip_completion_dsm", "missing": "pixels"},
        "optim": {"energy": {"lr": 1e-3}}}
    drl = copy.deepcopy(nce)
    drl["energy"] = {"type": "level_mlp", "hidden": [32, 32], "embedding": 8}
    drl["sampler"] = {"type": "langevin", "n_steps": 5, "step_size": 0.5}
    drl["objective"] = {"type": "drl", "levels": 4, "clamp": [-4.0, 4.0]}
    recipes["drl"] = drl
    for name, objective in (("dsm", {"sigma": 0.1, "antithetic": True}),
                            ("ssm", {"projection": "gaussian", "data_noise": 0.1})):  # no MCMC in training
        score = copy.deepcopy(mle)
        score["generator"] = {"type": "uniform", "low": -3.0, "high": 3.0}
        score["objective"] = {"type": name, **objective}
        recipes[name] = score
    ncsn = copy.deepcopy(drl)
    ladder = {"sigma_max": 3.0, "sigma_min": 0.05, "levels": 4}
    ncsn["sampler"] = {"type": "annealed_score_langevin", "steps_per_level": 3, "step_lr": 1e-3, **ladder}
    ncsn["generator"] = {"type": "uniform", "low": -3.0, "high": 3.0}
    ncsn["objective"] = {"type": "ncsn", **ladder}
    recipes["ncsn"] = ncsn
    for name in ("latent_ebm", "abp"):  # a prior over z; no [sampler]
        lat = copy.deepcopy(mle)
        del lat["sampler"]
        lat["generator"] = {"type": "mlp", "latent_dim": 2, "hidden": 16}
        lat["energy"] = ({"type": "latent_mlp", "latent_dim": 2, "hidden": [16, 16]} if name == "latent_ebm"
                         else {"type": "latent_gaussian", "latent_dim": 2})
        lat["objective"] = {"type": name, "posterior_steps": 5, **({"prior_steps": 10} if name == "latent_ebm" else {})}
        lat["optim"] = {"generator": {"type": "adam", "lr": 1e-3}}
        if name == "latent_ebm":
            lat["optim"]["energy"] = {"type": "adam", "lr": 1e-4, "betas": [0.5, 0.999]}
        recipes[name] = lat
    dbn = copy.deepcopy(mle)  # the crash falls in the second layer's updates: its chains and the counter resume
    del dbn["generator"]
    dbn["energy"] = {"type": "rbm", "hidden": 4, "data_bias": False}
    dbn["sampler"] = {"type": "gibbs"}
    dbn["objective"] = {"type": "dbn", "hidden": [3], "steps_per_layer": [5, 7], "chains": 16, "sample_steps": 5}
    dbn["optim"] = {"layers": {"type": "sgd", "lr": 0.05, "momentum": 0.5}}
    recipes["dbn"] = dbn
    for name, objective in (("ebgan", {}), ("began", {"lambda_k": 0.1}),  # k_t and MAGAN's margin resume
                            ("magan", {"warmup_steps": 2, "epoch_steps": 1})):
        recipes[name] = {
            "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "eval_samples": 16},
            "data": {"type": "digits", "batch_size": 16},
            "energy": {"type": "autoencoder", "channels": 4, "code": 4, "norm": "l1"},
            "generator": {"type": "deconv", "latent_dim": 4, "channels": 4},
            "objective": {"type": name, **objective},
            "optim": {"energy": {"lr": 1e-3}, "generator": {"lr": 1e-3}}}
    recipes["mle_patch"] = {  # one photo, a two-scale pyramid; every scale its own group
        "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 2, "sample_every": 0, "eval_samples": 2},
        "data": {"type": "photo", "name": "brick", "size": 24},
        "energy": {"type": "patchgencn", "scales": 2, "width": 4, "layers": 2},
        "sampler": {"type": "patch_pyramid", "n_steps": 2, "step_size": 0.05, "noise": 0.01},
        "generator": {"type": "uniform", "low": -1.0, "high": 1.0},
        "objective": {"type": "mle_patch", "chains": 2},
        "optim": {"scale0": {"lr": 1e-3}, "scale1": {"lr": 1e-3}}}
    return recipes


def test_resume_after_a_crash_is_exact_for_every_objective(tmp_path, tiny):
    recipes = _objective_recipes(tiny)
    bundled = {e.component.name for e in default_host().registry
               if e.component.kind == "objective" and (ROOT / "plugins" / e.distribution).is_dir()}
    assert bundled <= set(recipes), f"add a tiny recipe for {bundled - set(recipes)}"
    for name, recipe in recipes.items():
        full, crashed = tmp_path / f"{name}-full", tmp_path / f"{name}-crashed"
        run_recipe(recipe, out=str(full), progress=False)
        crash_at = recipe["run"]["steps"] - 1  # after a checkpoint, before the next
        with pytest.raises(_Crash):
            run_recipe(recipe, out=str(crashed), host=PluginHost(plugins=[CrashAt(crash_at)]), progress=False)
        run_recipe(recipe, out=str(crashed), resume=True, progress=False)
        assert _metrics(crashed) == _metrics(full), name
        last = f"step-{recipe['run']['steps']:06d}.safetensors"
        a = safetensors.torch.load_file(full / "checkpoints" / last)
        b = safetensors.torch.load_file(crashed / "checkpoints" / last)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def _metrics(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [_no_time(json.loads(x)) for x in lines]


def _no_time(record):
    return {k: v for k, v in record.items() if not k.startswith("time/")}



# -- the guard itself ----------------------------------------------------------------------

def _observe_nan_at(guard, bad_step, n=6, *, poll=True):
    seen = None
    for step in range(1, n + 1):
        v = torch.tensor(math.nan if step == bad_step else 1.0, device=guard.device)
        guard.observe(step, {"loss/energy": v, "energy/data": v * 2, "grad_norm/energy": torch.ones((), device=guard.device)})
        if poll and guard.poll() is not None and seen is None:
            seen = step
    return seen


def test_guard_names_the_first_bad_step_and_quantities():
    from ebmcore.train.divergence import DivergenceGuard

    guard = DivergenceGuard(torch.device("cpu"))
    assert _observe_nan_at(guard, 3) == 3  # the CPU sees it at that step
    d = guard.settle()
    assert d.step == 3 and [q for q, _, _ in d.bad] == ["loss/energy", "energy/data"]
    assert d.describe() == "non-finite loss/energy (nan), energy/data (nan)"
    guard = DivergenceGuard(torch.device("cpu"), max_abs_energy=10.0)
    guard.observe(1, {"loss/energy": torch.tensor(50.0), "energy/data": torch.tensor(-20.0)})
    assert guard.poll().describe() == "|energy/data| = 20 above run.max_abs_energy = 10"  # losses are not energies


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_guard_knows_at_most_one_step_late_and_the_step_exactly():
    from ebmcore.train.divergence import DivergenceGuard

    guard = DivergenceGuard(torch.device("cuda"))
    seen = _observe_nan_at(guard, 3)
    assert seen in (3, 4) and guard.settle().step == 3


def test_recipes_name_components_never_code(tiny):
    """A recipe's `type` is looked up in the registry: nothing is imported or evaluated."""
    from ebmcore.errors import RecipeError
    from ebmcore.train.recipe import parse_recipe

    for name in ("os.system", "builtins.eval", "__import__('os')"):
        bad = copy.deepcopy(tiny)
        bad["energy"]["type"] = name
        with pytest.raises(RecipeError, match=r"\$\.energy\.type: unknown energy"):
            parse_recipe(bad, default_host().registry)
