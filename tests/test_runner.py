"""The runner: outputs, determinism, exact resume after SIGKILL, divergence, safe files."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
from support import ROOT, ebm, killed_and_resumed, write_recipe

import ebmcore
from ebmcore import EbmError, PluginHost, default_host
from ebmcore.train import run_recipe
from ebmcore.train.recipe import parse_recipe
from ebmcore.train.run import Run


def _metrics(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")} for x in lines]


def test_run_writes_the_documented_run_directory(tmp_path, tiny):
    out = tmp_path / "run"
    record = run_recipe(tiny, out=str(out), progress=False)
    assert {"recipe.toml", "metrics.jsonl", "samples.png", "samples.safetensors", "density.png",
            "checkpoints"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"step-{s:06d}.{ext}" for s in (10, 20, 30) for ext in ("json", "safetensors")]
    assert safetensors.torch.load_file(out / "samples.safetensors")["x"].shape == (200, 2)
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert {"loss/energy", "energy/data", "energy/sample", "grad_norm/energy"} <= set(rows[0])
    assert "mmd2" in rows[-1] and "mmd2/h0.1" in rows[-1] and record["mmd2"] == rows[-1]["mmd2"]


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path, tiny):
    run_recipe(tiny, out=str(tmp_path / "a"), progress=False)
    run_recipe(tiny, out=str(tmp_path / "b"), progress=False)
    tiny["run"]["seed"] = 1
    run_recipe(tiny, out=str(tmp_path / "c"), progress=False)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


def test_run_threads_sets_torchs_cpu_threads(tmp_path, tiny):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        tiny["run"]["threads"] = 1
        run_recipe(tiny, out=str(tmp_path / "a"), progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_resume_after_sigkill_reproduces_the_uninterrupted_metrics(tmp_path, tiny):
    tiny["run"].update(steps=300, log_every=1, checkpoint_every=25)

    def no_final_pictures(killed):
        assert not (killed / "samples.png").exists()
    full, resumed = killed_and_resumed(write_recipe(tmp_path / "r.toml", tiny), tmp_path, after_kill=no_final_pictures)
    assert resumed == full and len(full) == 300


def test_resume_may_raise_the_step_count_only(tmp_path, tiny):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    tiny["run"]["steps"] = 40
    record = run_recipe(tiny, out=str(out), resume=True, progress=False)
    assert record["step"] == 40
    tiny["sampler"]["step_size"] = 0.5
    with pytest.raises(EbmError, match="sampler.step_size"):
        run_recipe(tiny, out=str(out), resume=True, progress=False)


def test_a_non_empty_run_directory_needs_resume(tmp_path, tiny):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    r = ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", out)
    assert r.returncode == 2 and "--resume" in r.stderr


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    # a huge learning rate without regularisation blows the energies up
    tiny["run"].update(steps=400, log_every=1, checkpoint_every=2)
    tiny["objective"]["alpha"] = 0.0
    tiny["optim"]["energy"].update(lr=10.0)
    r = ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 1, r.stderr
    m = re.search(r"training diverged at step (\d+): non-finite (.+); stopped, the last good checkpoint is "
                  r"step (\d+)", r.stderr)
    assert m, r.stderr
    bad, good = int(m.group(1)), int(m.group(3))
    assert good < bad
    # the kept checkpoint is finite and loadable
    run = Run.open(tmp_path / "run")
    assert run.step == good
    assert all(torch.isfinite(v).all() for v in run.objective.state_dict().values() if v.is_floating_point())


def test_checkpoints_are_safetensors_with_a_json_sidecar_and_every_rng(tmp_path, tiny):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    tensors = safetensors.torch.load_file(out / "checkpoints" / "step-000030.safetensors")
    assert {"rng/train", "rng/data", "rng/torch", "data/perm"} <= set(tensors)
    assert any(k.startswith("model/generator.x") for k in tensors)  # the replay buffer
    assert any(k.startswith("optim/energy/") for k in tensors)
    meta = json.loads((out / "checkpoints" / "step-000030.json").read_text())
    assert meta["step"] == 30 and len(meta["sha256"]) == 64 and "torch" in meta["versions"]
    assert meta["rng_states"] == ["rng/data", "rng/torch", "rng/train"]
    assert meta["data_stream"] == ["data/perm", "data/pos", "rng/data"]
    assert 0 < int(tensors["data/pos"]) <= 2000 and sorted(tensors["data/perm"].tolist()) == list(range(2000))


def test_a_tampered_checkpoint_is_detected(tmp_path, tiny):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    blob = out / "checkpoints" / "step-000030.safetensors"
    blob.write_bytes(blob.read_bytes()[:-10])
    r = ebm("sample", out, "-n", "4")
    assert r.returncode == 2 and "do not match the hash" in r.stderr


def test_nothing_in_the_code_uses_pickle_or_torch_load():
    sources = [p for d in ("ebmcore", "plugins", "examples") for p in (ROOT / d).rglob("*.py")]
    offenders = [str(p) for p in sources if re.search(r"(?<![\w.])torch\.load\(|import pickle|pickle\.load", p.read_text())]
    assert sources and offenders == []


def test_optimizer_for_a_group_the_objective_does_not_have_is_an_error(tiny):
    tiny["optim"]["generatr"] = {"lr": 1e-3}
    recipe = parse_recipe(tiny, default_host().registry)
    with pytest.raises(EbmError, match="no parameter group generatr; objective 'mle' trains: energy"):
        Run(recipe, default_host())


def test_sample_command_writes_a_picture_and_a_tensor(tmp_path, tiny):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    r = ebm("sample", out, "-n", "50", "--out", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert safetensors.torch.load_file(tmp_path / "s.safetensors")["x"].shape == (50, 2)


def test_programmatic_and_command_line_runs_agree(tmp_path, tiny):
    run_recipe(tiny, out=str(tmp_path / "py"), progress=False)
    assert ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", tmp_path / "cli", "--quiet").returncode == 0
    assert _metrics(tmp_path / "py") == _metrics(tmp_path / "cli")


# SIGINT takes the same deferred-signal path as SIGTERM: CI runs SIGTERM, -m slow both (20 s each)
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_sigint_or_sigterm_checkpoints_the_last_step_and_resume_matches(tmp_path, tiny, signum):
    tiny["run"].update(steps=300, log_every=1, checkpoint_every=100)
    recipe = write_recipe(tmp_path / "r.toml", tiny)
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert ebm("run", recipe, "--out", full, "--quiet").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "ebmcore", "run", str(recipe), "--out", str(stopped), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (stopped / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    step = int(re.search(r"at step (\d+): checkpoint saved", err).group(1))
    assert step < 300 and (stopped / "checkpoints" / f"step-{step:06d}.json").exists()
    assert ebm("run", recipe, "--out", stopped, "--resume", "--quiet").returncode == 0
    assert _metrics(stopped) == _metrics(full)


class _TwoPlayers:
    """A plugin with a two-player objective: the second group's loss runs through the
    first group's parameter (as a flow's loss runs through the energy in FCE)."""

    __name__ = "two_players"

    @ebmcore.hookimpl
    def ebm_components(self):
        import attrs

        @attrs.frozen
        class Config:
            pass

        class Game(ebmcore.Objective):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Linear(1, 1, bias=False)
                self.b = torch.nn.Linear(1, 1, bias=False)
                with torch.no_grad():
                    self.a.weight.fill_(0.5)
                    self.b.weight.fill_(3.0)

            def param_groups(self):
                return {"a": self.a, "b": self.b}

            def loss(self, batch, *, rng):
                ab = self.a.weight * self.b.weight
                return {"a": (ab - 1).pow(2).sum(), "b": -ab.sum()}, {"ab": ab.detach().sum()}

            def sample(self, n, *, rng, cond=None):
                return torch.zeros(n, 2)

        return [ebmcore.Component("objective", "two_players", Config, lambda c, ctx: Game())]


def test_every_group_sees_the_others_parameters_as_they_were_before_any_step(tmp_path, tiny):
    tiny["objective"] = {"type": "two_players"}
    tiny["optim"] = {"a": {"type": "sgd", "lr": 0.1}, "b": {"type": "sgd", "lr": 0.1}}
    tiny["run"].update(steps=1, log_every=1)
    del tiny["generator"], tiny["sampler"]
    run_recipe(tiny, out=str(tmp_path / "run"), host=PluginHost(plugins=[_TwoPlayers()]), progress=False)
    step = safetensors.torch.load_file(tmp_path / "run" / "checkpoints" / "step-000001.safetensors")
    a1, b1 = step["model/a.weight"].item(), step["model/b.weight"].item()
    # both gradients at (a, b) = (0.5, 3): d/da (ab − 1)² = 2(ab − 1)·b = 3, d/db (−ab) = −a;
    # had b's gradient been taken after a's step it would be −0.2, giving b = 3.02
    assert a1 == pytest.approx(0.5 - 0.1 * 3.0, rel=1e-6)
    assert b1 == pytest.approx(3.0 + 0.1 * 0.5, rel=1e-6)
