"""Score a finished ``clip_completion_dsm`` run (ebm-video) on fixed masks of its held-out clips:

    python benchmarks/clip_completion.py RUN_DIR [--n 4] [--draws 3]

For each mask draw (seeds 0, 1, …; ``missing = "frames"`` has one mask) it prints the MSE ×10⁴
on the missing values of the baselines (per-pixel temporal mean, linear interpolation in time),
of the objective's one denoising step from each of them, and of a control: the step from the
same fill with the first training clips' observed values in the condition (a model that reads
the observed values does worse there). docs/results.md "Missing frames and pixels by a learned
field" was measured with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ebmcore import EbmError
from ebmcore.train.run import Run


def score(run_dir: Path, *, n: int = 4, draws: int = 3) -> list[dict[str, float]]:
    """One row per mask draw: MSE ×10⁴ of the baselines, the steps from them and the control."""
    from ebm_video import ClipCompletionDSM
    from ebm_video.tasks import interpolated, missing_mask, temporal_mean

    run = Run.open(run_dir)
    if not isinstance(run.objective, ClipCompletionDSM):
        raise EbmError(f"{run_dir} was trained by {type(run.objective).__name__}, not clip_completion_dsm")
    objective, c = run.objective, run.objective.c
    x, train = run.data.heldout().x[:n], run.data.dataset().x
    train = train[torch.arange(len(x)) % len(train)]  # as many training clips, for the control
    rows = []
    for draw in range(draws if c.missing == "pixels" else 1):
        missing = missing_mask(tuple(x.shape), c.missing, c.share, torch.Generator().manual_seed(draw))
        where = missing.to(x.dtype)

        def mse(y: torch.Tensor) -> float:
            return float(((y - x) ** 2 * where).sum() / where.sum()) * 1e4

        mean, lerp = temporal_mean(x, missing), interpolated(x, missing)
        fill = lerp if c.missing == "pixels" else mean  # the better baseline of each
        control = objective.complete(torch.where(missing, fill, train), missing, rng=None)
        rows.append({"draw": draw, "temporal_mean": mse(mean), "interpolation": mse(lerp),
                     "step_from_mean": mse(objective.complete(mean, missing, rng=None)),
                     "step_from_interpolation": mse(objective.complete(lerp, missing, rng=None)),
                     "control": mse(torch.where(missing, control, x))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n", type=int, default=4, help="held-out clips (the first n; the task's default 4)")
    parser.add_argument("--draws", type=int, default=3, help="mask draws for missing = 'pixels'")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        rows = score(args.run_dir, n=args.n, draws=args.draws)
    except EbmError as exc:
        sys.exit(f"error: {exc}")
    for row in rows:
        print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
