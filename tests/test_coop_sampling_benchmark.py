"""benchmarks/coop_sampling.py on two tiny finished runs (an mle and a coop run)."""

import copy
import subprocess
import sys

from support import ROOT, TINY

from ebmcore.train import run_recipe


def test_benchmark_prints_one_row_per_run_with_steps_and_speed(tmp_path):
    mle = copy.deepcopy(TINY)
    mle["run"].update(steps=2, eval_samples=16)
    coop = copy.deepcopy(mle)
    coop["sampler"]["n_steps"] = 3
    coop["generator"] = {"type": "mlp", "latent_dim": 2, "hidden": 8}
    coop["objective"] = {"type": "coop"}
    coop["optim"]["generator"] = {"type": "adam", "lr": 1e-3}
    for name, recipe in (("mle", mle), ("coop", coop)):
        run_recipe(recipe, out=str(tmp_path / name), progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "coop_sampling.py"), str(tmp_path / "mle"),
                        str(tmp_path / "coop"), "-n", "32", "--repeats", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| mle", "| coop"))]
    assert len(rows) == 2, r.stdout
    assert rows[0].split("|")[3].strip() == "10" and rows[1].split("|")[3].strip() == "3"  # steps per sample
    assert rows[0].rstrip().endswith("1.00× |")
