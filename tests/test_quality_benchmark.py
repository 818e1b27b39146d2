"""benchmarks/quality.py on a tiny toy recipe: the run's CPU time, the mean of its scored
draws beside the yardsticks, a rescored row, and a row for the recipe's own
generator_chains task."""

import copy
import json
import subprocess
import sys

from support import ROOT, TINY, write_recipe


def test_benchmark_scores_draws_of_the_finished_run_beside_its_yardsticks(tmp_path):
    tiny = copy.deepcopy(TINY)
    tiny["run"].update(steps=10, eval_samples=100)
    tiny["tasks"] = {"buffer": {"type": "generator_chains", "n": 100, "n_steps": 10, "draws": 2}}
    recipe = write_recipe(tmp_path / "tiny.toml", tiny)
    table = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--recipes", str(recipe),
                        "--draws", "3", "--out", str(tmp_path / "runs"), "--rescore", "run.eval_samples=50",
                        "--json", str(table)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(table.read_text())["runs"]
    assert [(row["scored_with"], row.get("n")) for row in rows] == [
        ("recipe", 100), ("run.eval_samples=50", 50), ("task buffer", None)]
    final = json.loads((tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()[-1])
    task = rows.pop()  # the run's own record: the task's draws, no spread
    assert task["score"] == "mmd2" and task["mmd2"] == final["buffer/mmd2"]
    assert task["mmd2/vs_gaussian"] == final["buffer/mmd2"] / final["buffer/mmd2/gaussian"]
    for row in rows:
        assert row["recipe"] == "tiny" and row["score"] == "mmd2" and row["cpu_s"] > 0
        assert row["mmd2/min"] < row["mmd2"] < row["mmd2/max"]  # three different draws, their mean
        assert row["mmd2/vs_gaussian"] == row["mmd2"] / row["mmd2/gaussian"]
        assert row["mmd2/heldout"] < row["mmd2/gaussian"] and "mmd2/h0.1" in row
    assert "tiny" in r.stdout and "also: {'mmd2/h0.1'" in r.stdout


def test_benchmark_leaves_an_existing_run_alone_and_fails(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.toml", TINY)
    kept = tmp_path / "runs" / "tiny" / "mine.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("a run of mine")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--recipes", str(recipe),
                        "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and kept.read_text() == "a run of mine"
    assert "is not empty" in r.stderr and "error: 1 of 1 recipes failed: tiny" in r.stderr
