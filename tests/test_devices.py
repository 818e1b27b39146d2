"""run.device and run.precision: validation, auto, bf16 autocast with fp32 chains, CUDA where present."""

import json

import pytest
import torch
from support import ebm, write_recipe

from ebmcore import build
from ebmcore.sampling import sampling_precision
from ebmcore.train import run_recipe
from ebmcore.train.devices import autocast, resolve_device
from ebmcore.train.run import Run


def test_a_malformed_device_is_a_recipe_error(tmp_path, tiny):
    tiny["run"]["device"] = "gpu0"
    r = ebm("validate", write_recipe(tmp_path / "r.toml", tiny))
    assert r.returncode == 2 and "$.run.device" in r.stderr and "'cuda:N'" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_an_unavailable_device_is_named(tmp_path, tiny, device):
    tiny["run"]["device"] = device
    r = ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 2 and f"'{device}' is not available" in r.stderr
    assert not (tmp_path / "run").exists()


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


class _Probe(torch.nn.Module):
    """An energy that notes the dtype its layer computes in."""

    def __init__(self):
        super().__init__()
        self.lin, self.seen = torch.nn.Linear(2, 1), []

    def forward(self, x, cond=None):
        e = self.lin(x).squeeze(-1)
        self.seen.append(e.dtype)
        return e


def test_bf16_autocast_leaves_chains_in_fp32_unless_asked():
    sampler = build("sampler", "langevin", n_steps=3, step_size=0.01)
    energy, rng = _Probe(), torch.Generator().manual_seed(0)
    with autocast("bf16", torch.device("cpu")):
        assert energy(torch.zeros(4, 2)).dtype == torch.bfloat16  # the loss's forward: bf16
        energy.seen.clear()
        x = sampler.run(torch.zeros(4, 2), energy, rng=rng)
        assert set(energy.seen) == {torch.float32} and x.dtype == torch.float32
        energy.seen.clear()
        with sampling_precision("bf16"):
            sampler.run(torch.zeros(4, 2), energy, rng=rng)
        assert set(energy.seen) == {torch.bfloat16}


def test_a_bf16_run_trains_resumes_and_keeps_fp32_state(tmp_path, tiny):
    tiny["run"].update(steps=20, precision="bf16")
    out = tmp_path / "run"
    record = run_recipe(tiny, out=str(out), progress=False)
    assert record["step"] == 20 and record["mmd2"] == record["mmd2"]
    run = Run.open(out)
    assert {v.dtype for v in run.objective.state_dict().values() if v.is_floating_point()} == {torch.float32}
    tiny["run"]["steps"] = 30
    assert run_recipe(tiny, out=str(out), resume=True, progress=False)["step"] == 30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_run_and_its_state_follow_the_device(tmp_path, tiny):
    tiny["run"].update(device="cuda", steps=20, checkpoint_every=10)
    out = tmp_path / "run"
    full = run_recipe(tiny, out=str(tmp_path / "full"), progress=False)
    tiny["run"]["steps"] = 10
    run_recipe(tiny, out=str(out), progress=False)
    tiny["run"]["steps"] = 20
    record = run_recipe(tiny, out=str(out), resume=True, progress=False)  # checkpoint: CPU file → CUDA
    assert record["step"] == 20 and abs(record["mmd2"] - full["mmd2"]) < 0.05  # CUDA is not bitwise
    opened = Run.open(out)
    assert all(v.device.type == "cuda" for v in opened.objective.state_dict().values())
    assert opened.rng.device.type == "cuda"
    tiny["run"]["precision"] = "bf16"
    assert json.dumps(run_recipe(tiny, out=str(tmp_path / "bf16"), progress=False))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_the_conv_langevin_benchmark_runs_on_the_device(tmp_path, device):
    import subprocess
    import sys

    from support import ROOT

    out = tmp_path / "speed.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sampler_speed.py"), "--quick", "--repeats", "1",
                        "--samplers", "langevin", "--workloads", "conv28", "--threads", "1", "--device", device,
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["device"].startswith(device)
    assert list(result["results"]) == ["langevin: conv28 b128 k60"]
    assert result["results"]["langevin: conv28 b128 k60"]["rate"]["ebm"] > 0
