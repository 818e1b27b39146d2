"""The performance suite in one command: sampling speed (eager, compiled, peer libraries),
training-step speed, and quality per gradient; a chart of the ratios.

    python benchmarks/suite.py [--quick] [--out DIR] [--threads N]

Runs, each in its own process (one at a time, so nothing else competes for the cores):

1. ``sampler_speed.py --samplers langevin,hmc --compile --peers``: chain-steps (HMC:
   gradients) per second of ebm eager, ebm compiled and the installed peers
   (``pip install "ebmcore[bench]"``), each as a ratio to the hand-written eager loop
   timed in the same process;
2. ``training_speed.py --compile``: training steps per second of the toy and Fashion-MNIST
   recipes against a hand-written loop of the same algorithm;
3. ``ess_per_gradient.py``: effective sample size per gradient on the analytic targets.

Writes ``DIR/sampler_speed.json``, ``DIR/training_speed.json``, ``DIR/ess.json`` and
``DIR/performance.png`` (default DIR: benchmarks/results), and prints the acceptance
targets of the performance work with the measured ratios (paired ratios: the median of
back-to-back pairs, robust to drifts in load). Time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)


def targets(speed: dict, training: dict) -> list[tuple[str, float, float]]:
    """(what, measured paired ratio, target) for each acceptance target that was measured."""
    out = []
    for key, r in speed["results"].items():
        sampler, workload = key.split(": ")
        paired = r["paired_ratio"]
        if "ebm" in paired:
            out.append((f"{sampler} {workload}: ebm eager / hand", paired["ebm"], 0.97))
        if "ebm compiled" in paired and workload.startswith("mlp"):
            want = 1.3 if " b64 " in f" {workload} " else 1.1
            out.append((f"{sampler} {workload}: ebm compiled / hand", paired["ebm compiled"], want))
        best = "ebm compiled" if "ebm compiled" in paired else "ebm"
        for peer in paired:
            if peer not in ("ebm", "ebm compiled"):  # a peer: both ratios are to the same hand loop
                out.append((f"{sampler} {workload}: {best} / {peer}", paired[best] / paired[peer], 1.0))
    for name, r in training["results"].items():
        out.append((f"training {name}: ebm / hand", r["paired_ratio"]["ebm"], 0.95))
    return out


def chart(speed: dict, training: dict, path: Path) -> None:
    """Grouped bars: each contender's paired ratio to the hand-written loop, per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: r["paired_ratio"] for k, r in speed["results"].items()}
    groups.update({f"training: {k}": r["paired_ratio"] for k, r in training["results"].items()})
    contenders = list(dict.fromkeys(c for ratios in groups.values() for c in ratios))
    width = 0.8 / len(contenders)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(groups)), 4.5))
    for i, c in enumerate(contenders):
        xs = [g + (i - (len(contenders) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [ratios.get(c, 0) for ratios in groups.values()], width, label=c)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(groups)), [k.replace(": ", "\n") for k in groups], fontsize=8)
    ax.set_ylabel("speed / hand-written eager loop")
    ax.set_title(f"{speed['machine']['cpu']}, {speed['machine']['threads']} threads, torch {speed['machine']['torch']}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few repeats, numbers not meaningful")
    ap.add_argument("--out", default=str(HERE / "results"), help="where the JSON files and the chart go")
    ap.add_argument("--threads", default="2", help="torch threads (default 2)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = ["--quick"] if args.quick else []
    _run("sampler_speed.py", "--samplers", "langevin,hmc", "--compile", "--peers", "--threads", args.threads,
         "--json", str(out / "sampler_speed.json"), *quick)
    _run("training_speed.py", "--compile", "--threads", args.threads, "--json", str(out / "training_speed.json"),
         *quick, *(["--workloads", "toy"] if args.quick else []))
    _run("ess_per_gradient.py", "--json", str(out / "ess.json"), *quick)
    speed = json.loads((out / "sampler_speed.json").read_text())
    training = json.loads((out / "training_speed.json").read_text())
    chart(speed, training, out / "performance.png")
    print(f"\nchart: {out / 'performance.png'}\n\n{'target':<52} {'paired':>7} {'want':>6}")
    for what, ratio, want in targets(speed, training):
        print(f"{what:<52} {ratio:>7.3f} {'≥' + str(want):>6} {'ok' if ratio >= want else 'MISSED'}")


if __name__ == "__main__":
    main()
