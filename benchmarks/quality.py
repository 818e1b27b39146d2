"""Final sample quality of recipes beside their yardsticks, and the CPU time each cost.

    python benchmarks/quality.py --recipes toy2d-fast fmnist-coop [--draws 5] [--out runs/quality]
        [--set KEY=VALUE ...] [--rescore "objective.eval_chains=persistent" ...] [--json table.json]

Runs each recipe in full through the `ebm` command, as a user would, and takes the CPU time
(user + system) of that command and everything it started, from the operating system. Then
it opens the finished run and draws ``--draws`` independent sets of the recipe's evaluation
size (``run.eval_samples``) the way ``ebm sample`` does (the objective's own chains, seeds
0 … draws − 1), scores each with the data's own ``evaluate`` and prints the mean headline
score (FD for images, MMD² for 2-D) beside its yardsticks measured the same way — the
held-out data (floor), noise, a Gaussian fitted to the training data — with the ratio to
the Gaussian and the spread of the draws. One evaluation draw is noisy (FD spans several
points between draws of 1,000 for the same model): thresholds are judged on the mean.
``--rescore`` scores the same final model again with recipe overrides (e.g. a persistent
model's buffer chains), one more row per recipe. A recipe's own tasks that score samples
beside a fitted Gaussian (``generator_chains``) get a row each too, as the run's final
record has them (their draws are the task's, so no spread is shown). Run it on an idle
machine. A run directory that already exists under ``--out`` is left alone: ``ebm run``
refuses it and that recipe fails. Any failed recipe makes the exit status non-zero, after the others have run.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def headline(metrics: dict[str, float]) -> str:
    """The score the data reports beside a fitted Gaussian (``fd``, ``mmd2``…)."""
    names = [k[: -len("/gaussian")] for k in metrics if k.endswith("/gaussian")]
    if len(names) != 1:
        raise SystemExit(f"error: expected one score with a /gaussian yardstick, found {names or 'none'}")
    return names[0]


def score(out: Path, draws: int, overrides: list[str]) -> dict[str, float]:
    """Mean of ``draws`` scored draws from the run's final model (see the module doc)."""
    from ebmcore.train.run import Run

    run = Run.open(out, overrides=overrides)
    n = run.recipe.run.eval_samples
    per_draw = []
    for seed in range(draws):
        x = run.objective.sample(n, rng=torch.Generator(run.device).manual_seed(seed)).cpu()
        per_draw.append(run.data.evaluate(x))
    name = headline(per_draw[0])
    values = [m[name] for m in per_draw]
    mean = {k: statistics.fmean(m[k] for m in per_draw) for k in per_draw[0]}
    return {"score": name, "n": n, **mean, f"{name}/min": min(values), f"{name}/max": max(values),
            f"{name}/vs_gaussian": mean[name] / mean[f"{name}/gaussian"]}


def line(row: dict, spread: str) -> str:
    """A row of the printed table."""
    s = row["score"]
    return (f"{row['recipe']:<24} {row['scored_with']:<32} {row['cpu_s']:>7.0f} {s:>6} {row[s]:>9.4g} {spread:>19} "
            f"{row[f'{s}/heldout']:>9.4g} {row[f'{s}/noise']:>9.4g} {row[f'{s}/gaussian']:>9.4g} "
            f"{row[f'{s}/vs_gaussian']:>9.3f}")


def task_scores(out: Path) -> dict[str, dict[str, float]]:
    """Label → metrics of each task in the run's final record that scores samples beside a
    fitted Gaussian (``<label>/fd/gaussian``…), the label's prefix removed."""
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    labels = sorted({k.split("/")[0] for k in final if k.endswith("/gaussian") and k.count("/") == 2})
    return {label: {k[len(label) + 1:]: v for k, v in final.items() if k.startswith(f"{label}/")}
            for label in labels}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", required=True, help="names under recipes/, or paths to .toml files")
    p.add_argument("--draws", type=int, default=5, help="scored draws per model (the mean is reported)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run")
    p.add_argument("--rescore", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="score the final model again with these overrides (one more row)")
    p.add_argument("--json", type=Path, help="write the table here too")
    args = p.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.draws} draws per score")
    print(f"{'recipe':<24} {'scored with':<32} {'CPU s':>7} {'score':>6} {'mean':>9} {'min..max':>19} "
          f"{'held-out':>9} {'noise':>9} {'Gaussian':>9} {'/Gaussian':>9}")
    rows, failed = [], []
    for given in args.recipes:
        path = Path(given) if given.endswith(".toml") else ROOT / "recipes" / f"{given}.toml"
        name = path.stem
        out = args.out / name
        sets = [x for s in args.overrides for x in ("--set", s)]
        before = child_cpu_seconds()
        r = subprocess.run([sys.executable, "-m", "ebmcore", "run", str(path),
                            "--out", str(out), "--quiet", *sets], capture_output=True, text=True)
        cpu = child_cpu_seconds() - before
        if r.returncode != 0:
            print(f"{name}: failed (exit {r.returncode})\n{r.stderr.rstrip()}", file=sys.stderr)
            failed.append(name)
            continue
        for rescore in ["", *args.rescore]:
            extra = [o for o in rescore.split(",") if o]
            m = score(out, args.draws, extra)
            s = m["score"]
            row = {"recipe": name, "scored_with": rescore or "recipe", "cpu_s": round(cpu, 1), **m}
            rows.append(row)
            print(line(row, f"{m[f'{s}/min']:.4g}..{m[f'{s}/max']:.4g}"))
            yardsticks = {s, *(f"{s}/{k}" for k in ("heldout", "noise", "gaussian", "vs_gaussian", "min", "max"))}
            shown = {k: round(v, 5) for k, v in m.items()  # the data's other scores (h = 0.1, classes…)
                     if isinstance(v, float) and k not in yardsticks}
            if shown:
                print(f"{'':<24} also: {shown}")
        for label, m in task_scores(out).items():
            s = headline(m)
            row = {"recipe": name, "scored_with": f"task {label}", "cpu_s": round(cpu, 1), "score": s, **m,
                   f"{s}/vs_gaussian": m[s] / m[f"{s}/gaussian"]}
            rows.append(row)
            print(line(row, "(the task's draws)"))
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "failed": failed}, indent=1))
    if failed:
        raise SystemExit(f"error: {len(failed)} of {len(args.recipes)} recipes failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
