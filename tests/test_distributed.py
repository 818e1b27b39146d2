"""Data-parallel training under torchrun on the CPU (gloo): two ranks of the tiny recipe."""

import json
import os
import subprocess
import sys

import pytest
import safetensors.torch
from support import ROOT, ebm, write_recipe

PROBE = ROOT / "tests" / "fixtures" / "dist_probe.py"


def torchrun(*args, env=None, timeout=120):
    """``torchrun --nproc-per-node 2 ARGS`` (as ``python -m torch.distributed.run``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _training(record):
    return {k: v for k, v in record.items() if not k.startswith(("time/", "mmd2"))}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The tiny recipe, 30 steps on two ranks, with each rank's own view (dist_probe.py)."""
    from support import TINY

    tmp = tmp_path_factory.mktemp("dist")
    recipe = write_recipe(tmp / "r.toml", TINY)
    probe = tmp / "probe"
    probe.mkdir()
    r = torchrun(PROBE, "run", recipe, "--out", tmp / "run", "--quiet", env={"PROBE_OUT": str(probe)})
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{i}.json").read_text()) for i in range(2)]
    return tmp, recipe, tmp / "run", ranks, r.stdout


def test_two_ranks_keep_identical_parameters_and_reduce_their_metrics(two_ranks):
    _, _, out, ranks, stdout = two_ranks
    assert [r["rc"] for r in ranks] == [0, 0] and [r["step"] for r in ranks] == [30, 30]
    assert ranks[0]["params"] == ranks[1]["params"]
    # each rank had its own chains and data shard: different local losses
    assert ranks[0]["local"][0]["loss/energy"] != ranks[1]["local"][0]["loss/energy"]
    for record in _records(out):
        mine = [r["local"][record["step"] - 1] for r in ranks]
        for key in ("loss/energy", "energy/data", "energy/sample"):
            assert record[key] == pytest.approx((mine[0][key] + mine[1][key]) / 2, rel=1e-5, abs=1e-7)
    # the checkpoint: every rank's parameter hash equal, rank 1's buffer and RNG inside
    meta = json.loads((out / "checkpoints" / "step-000030.json").read_text())
    assert meta["world_size"] == 2 and len(set(meta["parameter_sha256"])) == 1
    assert meta["parameter_sha256"][0] == ranks[0]["params"]
    tensors = safetensors.torch.load_file(out / "checkpoints" / "step-000030.safetensors")
    assert {"rank1/model/generator.x", "rank1/rng/train", "rank1/rng/torch"} <= set(tensors)
    assert not (tensors["rank1/model/generator.x"] == tensors["model/generator.x"]).all()
    # twice the global batch: 2 × 64 examples consumed per step
    assert ranks[0]["batch"] == ranks[1]["batch"] == 64
    assert int(tensors["data/pos"]) == 15 * 128  # 30 steps: two epochs of 15 global batches of 2 × 64


def test_leaving_the_process_group_stops_its_threads(two_ranks):
    # gloo threads still running at exit abort a process now and then (SIGABRT): the group
    # must be freed, not only destroyed (see World.join)
    for rank in two_ranks[3]:
        if rank["threads"] is None:
            pytest.skip("no /proc/self/task to list a process's threads")
        assert not [t for t in rank["threads"] if "gloo" in t], rank["threads"]


def test_only_rank_zero_writes_one_set_of_outputs(two_ranks):
    _, _, out, _, stdout = two_ranks
    names = {p.name for p in out.iterdir()} - {"tensorboard"}  # the plugin's, where installed
    assert names == {"recipe.toml", "metrics.jsonl", "samples.png", "samples.safetensors", "density.png",
                     "checkpoints", "samples", ".lock"}
    if (out / "tensorboard").exists():
        assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in (out / "samples").iterdir()] == ["step-000030.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"step-{s:06d}.{ext}" for s in (10, 20, 30) for ext in ("json", "safetensors")]
    assert [r["step"] for r in _records(out)] == [5, 10, 15, 20, 25, 30]
    assert stdout.count('"mmd2"') == 1  # the final record, printed once


def test_resume_on_two_ranks_continues_exactly(two_ranks, tmp_path):
    _, recipe, full, _, _ = two_ranks
    out = tmp_path / "run"
    r = torchrun("-m", "ebmcore", "run", recipe, "--out", out, "--quiet", "--set", "run.steps=20")
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun("-m", "ebmcore", "run", recipe, "--out", out, "--quiet", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [_training(x) for x in _records(out)] == [_training(x) for x in _records(full)]
    assert _records(out)[-1]["mmd2"] == _records(full)[-1]["mmd2"]


def test_resuming_with_another_number_of_processes_is_refused_sampling_works(two_ranks):
    _, recipe, full, _, _ = two_ranks
    r = ebm("run", recipe, "--out", full, "--resume", "--set", "run.steps=40")
    assert r.returncode == 2
    assert "written by 2 process(es)" in r.stderr and "not 1" in r.stderr
    # sampling from it needs no torchrun
    r = ebm("sample", full, "-n", "8", "--out", full.parent / "s.png")
    assert r.returncode == 0, r.stderr


def test_a_divergence_is_rolled_back_on_every_rank_at_the_same_step(tmp_path):
    from support import TINY

    recipe = write_recipe(tmp_path / "r.toml", TINY)
    r = torchrun("-m", "ebmcore", "run", recipe, "--out", tmp_path / "run", "--quiet",
                 "--set", "run.steps=400", "--set", "run.log_every=1", "--set", "run.checkpoint_every=2",
                 "--set", "objective.alpha=0.0", "--set", "optim.energy.lr=10.0",
                 "--set", "run.on_divergence=rollback")
    # the ranks roll back together (a rank out of step would hang in the next collective)
    assert r.stderr.count("rolled back to step") == 3, r.stderr[-3000:]  # told once, by rank 0
    assert "after 3 rollbacks, run.max_rollbacks" in r.stderr
    assert r.returncode == 1 and "exitcode  : -6" not in r.stderr  # both ranks exit 1, none aborts
    meta = json.loads(sorted((tmp_path / "run" / "checkpoints").glob("*.json"))[-1].read_text())
    assert len(set(meta["parameter_sha256"])) == 1
