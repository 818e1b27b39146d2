"""Multigrid against a single-grid model on one texture, at the same gradient evaluations per sample.

    OMP_NUM_THREADS=1 python benchmarks/texture_multigrid.py [--out runs/bench-texture] [--set k=v ...]

Trains, one after the other in this one run, through the `ebm` command:

- multigrid: recipes/texture-multigrid.toml as it is (grids 1→4→16→64, K steps each);
- single grid: the same recipe with the pyramid cut to its finest grid — the same 64×64
  ConvNet, the same kernel (step, noise), optimizer and training steps — whose chains start
  from uniform noise on [−1, 1] and run 4·K steps at 64×64 (``resolutions`` grids × K), so
  both models spend the same number of energy gradients per sample, in training and in
  evaluation. (A multigrid gradient at 1×1 costs far less than one at 64×64: per gradient
  evaluation the comparison favours the single grid.)

Then prints, for each, the Gram distance (texture/gram) of its fresh samples to the
exemplar, next to uniform noise (texture/gram_noise, the ceiling) and the training crops
(texture/gram_crops), with wall-clock and CPU seconds. `--set` overrides apply to both.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import tomli_w
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "texture-multigrid.toml"


def single_grid(recipe: dict) -> dict:
    """The recipe's finest grid alone, from uniform noise, with as many steps as the whole pyramid."""
    r = json.loads(json.dumps(recipe))
    grids = r["energy"]["resolutions"]
    finest = grids[-1]
    r["energy"]["resolutions"] = [finest]
    r["sampler"]["n_steps"] = r["sampler"]["n_steps"] * len(grids)
    r["sampler"]["upsample_noise"] = 0.0  # the start is already noise
    r["generator"] = {"type": "uniform", "low": -1.0, "high": 1.0}
    r["objective"]["fresh_start"] = "generator"
    r["optim"] = {f"scale{finest}": r["optim"][f"scale{finest}"]}
    return r


def run(name: str, recipe: dict, out: Path, overrides: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.toml"
    path.write_text(tomli_w.dumps(recipe))
    shutil.rmtree(out / name, ignore_errors=True)
    sets = [x for s in overrides for x in ("--set", s)]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ebmcore", "run", str(path), "--out", str(out / name), "--quiet",
                        *sets], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{name}: failed\n{r.stderr}")
    record = json.loads(r.stdout)
    steps = recipe["sampler"]["n_steps"] * len(recipe["energy"]["resolutions"])
    return {"model": name, "grids": recipe["energy"]["resolutions"], "gradients_per_sample": steps,
            "gram": record["texture/gram"], "gram_noise": record["texture/gram_noise"],
            "gram_crops": record["texture/gram_crops"], "wall_s": round(wall, 1),
            "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "samples": str(out / name / "samples.png")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-texture")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="passed to both runs")
    p.add_argument("--json", type=Path, help="write the table here too")
    args = p.parse_args()

    recipe = tomllib.loads(RECIPE.read_text())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows = [run("multigrid", recipe, args.out, args.overrides),
            run("single_grid", single_grid(recipe), args.out, args.overrides)]
    print(f"{'model':<12} {'grids':<16} {'grads/sample':>12} {'gram':>7} {'noise':>7} {'crops':>7} "
          f"{'wall s':>7} {'cpu s':>7}")
    for row in rows:
        print(f"{row['model']:<12} {str(row['grids']):<16} {row['gradients_per_sample']:>12} {row['gram']:>7.4f} "
              f"{row['gram_noise']:>7.4f} {row['gram_crops']:>7.4f} {row['wall_s']:>7.1f} {row['cpu_s']:>7.1f}")
    mg, sg = rows
    verdict = "wins" if mg["gram"] < sg["gram"] and mg["gram"] < mg["gram_noise"] else "does NOT win"
    print(f"multigrid {verdict}: gram {mg['gram']:.4f} vs single grid {sg['gram']:.4f}, noise {mg['gram_noise']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
