"""Sampling from trained runs: Langevin steps per sample, FD and images per second, side by side.

    OMP_NUM_THREADS=1 python benchmarks/coop_sampling.py RUN_DIR [RUN_DIR ...] [-n 1000] [--repeats 3]

For each finished run directory (``ebm run`` output), opens its final checkpoint and draws
``n`` samples the way ``ebm sample`` does (``objective.sample``: fresh short-run chains for
``mle``, generator proposals + Langevin revision for ``coop``/``coop_vae``). The runs are
timed in turns (``--repeats`` rounds, each run once per round, the median kept), so a
busy machine slows them alike; speed-ups are against the first run given. Every round
draws new samples (seed = round), and the FD (the data's classifier-feature Fréchet
distance, held-out floor beside it) is given as the mean over rounds with its range: one
draw of 1,000 samples moves it by several units.
"""

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ebmcore.train.run import Run


def langevin_steps(run: Run) -> int:
    objective = run.objective
    return objective.sample_steps or objective.sampler.n_steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories; the first is the baseline")
    p.add_argument("-n", type=int, default=1000, help="samples per timing")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds")
    args = p.parse_args(argv)
    runs = [Run.open(d) for d in args.runs]
    times: dict[Path, list[float]] = {d: [] for d in args.runs}
    scores: dict[Path, list[dict[str, float]]] = {d: [] for d in args.runs}
    for round_ in range(args.repeats):
        for d, run in zip(args.runs, runs):
            rng = torch.Generator().manual_seed(round_)
            run.objective.eval()
            t0 = time.perf_counter()
            x = run.objective.sample(args.n, rng=rng)
            times[d].append(time.perf_counter() - t0)
            scores[d].append(run.data.evaluate(x.cpu()))
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s) "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), n = {args.n}, "
          f"median of {args.repeats} rounds")
    print("| run | objective | Langevin steps per sample | FD (mean, range) | FD held-out | images/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    base = args.n / statistics.median(times[args.runs[0]])
    for d, run in zip(args.runs, runs):
        rate = args.n / statistics.median(times[d])
        fds = [s.get("fd", float("nan")) for s in scores[d]]
        held = scores[d][0].get("fd/heldout", float("nan"))
        print(f"| {d.name} (step {run.step}) | {run.recipe.sections['objective'].type} | {langevin_steps(run)} | "
              f"{statistics.mean(fds):.1f} ({min(fds):.1f}–{max(fds):.1f}) | {held:.2f} | {rate:.0f} | "
              f"{rate / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
