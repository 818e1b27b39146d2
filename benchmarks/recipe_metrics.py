"""Every recipe's final metrics, recorded and compared: the check that a change moved nothing.

    python benchmarks/recipe_metrics.py record before.json            # on the old checkout
    python benchmarks/recipe_metrics.py record after.json             # on the new one
    python benchmarks/recipe_metrics.py compare before.json after.json

``record`` runs each recipe through the ``ebm`` command on this environment with a fixed
thread count (``--threads``, default 1, so that runs are bit-reproducible), the toy,
digits and texture recipes at their full length and the Fashion-MNIST ones at
``--fmnist-steps`` (50), ``--jobs`` at a time, and writes each final record (the last
line of ``metrics.jsonl``, timings left out) to a JSON file. ``compare`` reports every key
whose value differs; keys only in the second file (new metrics) are listed, not counted
as differences. It exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _final_record(run_dir: Path) -> dict:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {k: v for k, v in json.loads(lines[-1]).items() if not k.startswith("time/")}


def run_one(recipe: Path, steps: int | None, threads: int, scratch: Path) -> tuple[str, dict]:
    out = scratch / recipe.stem
    cmd = ["ebm", "run", str(recipe), "--quiet", "--out", str(out)]
    if steps is not None:
        cmd += ["--set", f"run.steps={steps}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return recipe.stem, {"error": done.stderr.strip().splitlines()[-1:], "returncode": done.returncode}
    print(f"{recipe.stem}: {wall:.0f} s", file=sys.stderr, flush=True)
    return recipe.stem, _final_record(out)


def record(args: argparse.Namespace) -> int:
    recipes = sorted((ROOT / "recipes").glob("*.toml"))
    if args.only:
        recipes = [r for r in recipes if any(r.stem.startswith(p) for p in args.only)]
    jobs = [(r, args.fmnist_steps if r.stem.startswith("fmnist") else None) for r in recipes]
    with tempfile.TemporaryDirectory(prefix="ebm-recipe-metrics-") as scratch:
        with ThreadPoolExecutor(args.jobs) as pool:
            results = dict(pool.map(lambda j: run_one(*j, args.threads, Path(scratch)), jobs))
    Path(args.file).write_text(json.dumps(dict(sorted(results.items())), indent=1) + "\n")
    failed = [k for k, v in results.items() if "error" in v]
    for k in failed:
        print(f"{k}: failed: {results[k]['error']}", file=sys.stderr)
    return 1 if failed else 0


def compare(args: argparse.Namespace) -> int:
    before, after = (json.loads(Path(f).read_text()) for f in (args.before, args.after))
    differ = 0
    for recipe in sorted(before.keys() | after.keys()):
        a, b = before.get(recipe), after.get(recipe)
        if a is None or b is None:
            print(f"{recipe}: only in {'after' if a is None else 'before'}")
            differ += 1
            continue
        for key in sorted(a.keys() | b.keys()):
            if key not in b:
                print(f"{recipe}: {key} missing after (was {a[key]!r})")
                differ += 1
            elif key not in a:
                print(f"{recipe}: new {key} = {b[key]!r}")
            elif a[key] != b[key]:
                print(f"{recipe}: {key} {a[key]!r} -> {b[key]!r}")
                differ += 1
    shared = len(before.keys() & after.keys())
    print(f"{shared} recipes compared, {differ} differences")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("file")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--fmnist-steps", type=int, default=50)
    r.add_argument("--only", nargs="*", help="recipe name prefixes")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args()
    return record(args) if args.command == "record" else compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
