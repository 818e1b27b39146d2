"""One process against two: final MMD² of a toy recipe, and the examples consumed per step.

    python benchmarks/distributed.py [--recipe recipes/toy2d-cd.toml] [--nprocs 1 2] [--set KEY=VALUE ...]

Each run is ``torchrun --standalone --nproc-per-node N -m ebmcore run RECIPE`` on the CPU
(gloo, one thread per process). ``data.batch_size`` is per process, so N processes take a
global batch of N × batch_size per step; the script reads it back from the last
checkpoint's sidecar (``data_order.global_batch``) and checks it. Reported in
docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(recipe: Path, nprocs: int, out: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nprocs),
           "-m", "ebmcore", "run", str(recipe), "--out", str(out), "--quiet"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{nprocs} process(es) failed:\n{r.stderr[-3000:]}")
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    last = sorted((out / "checkpoints").glob("step-*.json"))[-1]
    meta = json.loads(last.read_text())
    return {"processes": nprocs, "steps": final["step"], "mmd2": final["mmd2"], "mmd2/h0.1": final["mmd2/h0.1"],
            "global_batch": meta["data_order"]["global_batch"], "world_size": meta.get("world_size", 1),
            "wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "toy2d-cd.toml")
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nprocs:
            rows.append(run(args.recipe, n, Path(tmp) / f"n{n}", args.overrides))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["global_batch"] // rows[0]["processes"]
    for row in rows:
        assert row["global_batch"] == row["processes"] * base, row  # N × the per-process batch
    print(f"per-process batch {base}; global batch per step: "
          + ", ".join(f"{r['processes']} proc: {r['global_batch']}" for r in rows))


if __name__ == "__main__":
    main()
