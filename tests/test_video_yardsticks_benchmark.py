"""benchmarks/video_yardsticks.py on a finished 2-step stconvnet run (moving digits): a row per
kind of clip set and size, the floor's rows true to the metric, and its error: exits."""

import subprocess
import sys

import pytest
from support import ROOT, TINY_CLIPS

from ebmcore.train import run_recipe
from ebmcore.train.run import Run

SCRIPT = str(ROOT / "benchmarks" / "video_yardsticks.py")


def test_the_benchmark_prints_each_kind_at_each_size_and_the_floor_true_to_the_metric(tmp_path):
    from ebm_video.metrics import VideoMetrics

    run_recipe(TINY_CLIPS, out=str(tmp_path / "run"), progress=False)
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "run"), "--sizes", "3", "6", "9", "--draws", "3",
                        "--noise", "0.01"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = [line.rsplit(None, 5) for line in r.stdout.strip().splitlines()[1:]]
    sizes = {(name, int(n)) for name, n, *_ in table}
    # the training clips have 6: no floor rows at 9, every other kind at every size
    assert sizes == {(k, n) for k in ("training clips (floor)", "training clips + noise 0.01") for n in (3, 6)} | {
        (k, n) for k in ("fitted Gaussian", "fitted Gaussian + noise 0.01", "samples") for n in (3, 6, 9)}
    run = Run.open(tmp_path / "run")
    train = run.data.dataset().x
    whole = VideoMetrics(train, run.data.heldout().x).distance(train)
    # every draw of all 6 training clips is the training set reordered: no spread, the metric's own floor
    floor = next(row for row in table if row[:2] == ["training clips (floor)", "6"])
    mean, sd, low, high = (float(v) for v in floor[2:])
    assert sd == 0 and low == high == pytest.approx(whole, abs=1e-3) and mean == pytest.approx(whole, abs=1e-3)
    no_samples = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "run"), "--sizes", "3", "--draws", "2",
                                 "--no-samples"], capture_output=True, text=True, timeout=300)
    assert no_samples.returncode == 0 and "samples" not in no_samples.stdout, no_samples.stderr


@pytest.mark.parametrize("args, says", [(["--draws", "1"], "at least 2"), (["--noise", "-0.1"], "not negative"),
                                        ([], "none")])
def test_the_benchmark_refuses_bad_options_and_a_missing_run(tmp_path, args, says):
    # the options are checked before the run is opened: the directory need not exist for them
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "none"), *args], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error:") and says in r.stderr, r.stderr


def test_the_benchmark_refuses_a_run_of_another_modality(tmp_path):
    run_recipe({"run": {"seed": 0, "steps": 1, "eval_samples": 2}, "data": {"type": "toy2d", "batch_size": 8},
                "energy": {"type": "mlp", "hidden": [4]}, "sampler": {"type": "langevin", "n_steps": 1},
                "generator": {"type": "uniform"}, "objective": {"type": "mle"}}, out=str(tmp_path / "toy"),
               progress=False)
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "toy")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "not clips" in r.stderr, r.stderr
