"""benchmarks/clip_completion.py on a finished 2-step clip_completion_dsm run (moving digits):
one row per mask draw for missing pixels, one for missing frames, with the baselines it
prints equal to the ones computed here."""

import subprocess
import sys

import pytest
import torch
from support import ROOT, TINY_CLIPS

from ebmcore.train import run_recipe
from ebmcore.train.run import Run


@pytest.mark.parametrize("missing, rows", [("pixels", 2), ("frames", 1)])
def test_the_benchmark_scores_each_mask_draw_beside_the_baselines(tmp_path, missing, rows):
    from ebm_video import interpolated, missing_mask

    recipe = {"run": {"seed": 0, "steps": 2, "eval_samples": 2},
              "data": {"type": "moving_digits", "n": 8, "heldout": 4, "size": 12, "digit": 6, "clip": 5,
                       "batch_size": 4},
              "energy": {"type": "clip_field", "channels": [4]},
              "objective": {"type": "clip_completion_dsm", "missing": missing}}
    out = tmp_path / "run"
    run_recipe(recipe, out=str(out), progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "clip_completion.py"), str(out), "--n", "3",
                        "--draws", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == rows
    x = Run.open(out).data.heldout().x[:3]
    for draw, line in enumerate(lines):
        row = dict(zip(line.split()[::2], line.split()[1::2]))
        assert set(row) == {"draw", "temporal_mean", "interpolation", "step_from_mean", "step_from_interpolation",
                            "control"} and int(row["draw"]) == draw
        gone = missing_mask(tuple(x.shape), missing, 0.5, torch.Generator().manual_seed(draw))
        lerp = float((interpolated(x, gone) - x)[gone].pow(2).mean()) * 1e4
        assert float(row["interpolation"]) == pytest.approx(lerp, abs=1e-3)


def test_the_benchmark_refuses_a_run_of_another_objective_and_a_missing_directory(tmp_path):
    run_recipe({**TINY_CLIPS, "run": {**TINY_CLIPS["run"], "steps": 1}}, out=str(tmp_path / "mle"), progress=False)
    for run_dir, says in ((tmp_path / "mle", "not clip_completion_dsm"), (tmp_path / "none", "none")):
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "clip_completion.py"), str(run_dir)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stderr.startswith("error:") and says in r.stderr, r.stderr
