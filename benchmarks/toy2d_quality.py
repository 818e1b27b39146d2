"""Quality and wall time of the 2-D toy recipes, against a single fitted Gaussian.

    python benchmarks/toy2d_quality.py [--recipes toy2d-persistent ...] [--out runs/bench]

Runs each recipe in full (through the `ebm` command, as a user would), timing it, then
prints its final MMD² (h = 0.5 and 0.1, 2,000 fresh-chain samples against 2,000 held-out
points) next to the MMD² of 2,000 samples from one Gaussian fitted to the training set,
and their ratio. Run it on an idle machine: the wall time is part of the result.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["toy2d-persistent", "toy2d-shortrun", "toy2d-cd"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=DEFAULT)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run")
    p.add_argument("--json", type=Path, help="write the table here too")
    args = p.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'recipe':<20} {'seconds':>8} {'mmd2':>8} {'mmd2/h0.1':>10} {'heldout':>9} {'gaussian':>9} "
          f"{'mmd2/gauss':>11}")
    rows = []
    for name in args.recipes:
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)
        sets = [x for s in args.overrides for x in ("--set", s)]
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "ebmcore", "run", str(ROOT / "recipes" / f"{name}.toml"),
                            "--out", str(out), "--quiet", *sets], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"{name}: failed\n{r.stderr}")
            continue
        rec = json.loads(r.stdout)
        # the yardsticks are in the record: the same MMD² of a held-out draw and of the fitted Gaussian
        row = {"recipe": name, "seconds": round(seconds, 1), **{k: v for k, v in rec.items() if k.startswith("mmd2")},
               "out": str(out)}
        rows.append(row)
        print(f"{name:<20} {seconds:>8.1f} {rec['mmd2']:>8.4f} {rec['mmd2/h0.1']:>10.4f} {rec['mmd2/heldout']:>9.4f} "
              f"{rec['mmd2/gaussian']:>9.4f} {rec['mmd2/vs_gaussian']:>11.3f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows}, indent=1))


if __name__ == "__main__":
    main()
