"""Peak memory of long runs against short ones: a sampling chain and a training run.

    python benchmarks/memory.py [--short 200] [--long 2000]

Each measurement is a fresh interpreter (one thread) whose peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``) is read at the end:

- *sampling*: one Langevin chain of N steps (1,000 chains, the MLP energy of the tiny toy
  recipe, 2-D), no trace;
- *training*: the tiny toy recipe (MLP energy, replay buffer of 1,000, 10 Langevin steps per
  update, one checkpoint at the end) for N optimisation steps.

A graph kept alive across steps, an unbounded buffer or a growing history would show as a
peak that grows with N. The test ``tests/test_memory.py`` runs a quicker version.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def sampling(steps: int, chains: int = 1000) -> None:
    import torch

    import ebmcore

    energy = ebmcore.BuildContext(event_shape=(2,)).build("energy", "mlp", hidden=[32, 32])
    sampler = ebmcore.build("sampler", "langevin", step_size=0.01, n_steps=steps)
    rng = torch.Generator().manual_seed(0)
    x = sampler.run(torch.randn(chains, 2, generator=rng), energy, rng=rng)
    assert torch.isfinite(x).all()


def training(steps: int, sampler_steps: int = 10) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from support import TINY

    from ebmcore.train import run_recipe

    recipe = copy.deepcopy(TINY)
    recipe["run"].update(steps=steps, log_every=100, checkpoint_every=0, eval_samples=200)
    recipe["sampler"]["n_steps"] = sampler_steps
    with tempfile.TemporaryDirectory() as tmp:
        run_recipe(recipe, out=f"{tmp}/run", progress=False)


def measure(kind: str, steps: int) -> float:
    """Peak RSS in MiB of a fresh interpreter doing one run."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import memory; "
            f"memory.{kind}({steps}); print(memory.peak_mb())")
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(r.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=200)
    p.add_argument("--long", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = {}
    for kind in ("sampling", "training"):
        short, long = measure(kind, args.short), measure(kind, args.long)
        rows[kind] = {"short_steps": args.short, "long_steps": args.long, "short_peak_mib": round(short, 1),
                      "long_peak_mib": round(long, 1), "difference": round(long / short - 1, 4)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'run':<10} {'steps':>11} {'peak RSS (MiB)':>18} {'difference':>11}")
    for kind, r in rows.items():
        print(f"{kind:<10} {r['short_steps']:>5} {r['long_steps']:>5} {r['short_peak_mib']:>8} "
              f"{r['long_peak_mib']:>9} {100 * r['difference']:>10.2f}%")


if __name__ == "__main__":
    main()
