"""How far apart the video metric's yardsticks are, against its spread from draw to draw, on a
finished ebm-video run's data (and its samples):

    python benchmarks/video_yardsticks.py RUN_DIR [--sizes 32 256] [--draws 8] [--noise 0.005 0.01]

Each row is the metric ``video`` (ebm_video.metrics, against the run's held-out clips) of
``--draws`` sets of each size (mean, sd, min, max): random training clips (the floor; only
sizes the data have), a Gaussian fitted to the training clips, that Gaussian plus white noise
of each ``--noise`` std (no model: what noise alone does to the number), the training clips plus
that noise, and the run's ``objective.sample`` (its own samples; for a completion objective
those are completions, not synthesis). A model beats the Gaussian only by more than the
Gaussian's sd; where the Gaussian scores the floor at the larger size, no model can.
docs/results.md "Can a model beat the Gaussian on the tree?" was measured with it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ebmcore import EbmError
from ebmcore.kit.metrics import fitted_gaussian
from ebmcore.train.run import Run


def rows(run_dir: Path, *, sizes: tuple[int, ...] = (32, 256), draws: int = 8,
         noise: tuple[float, ...] = (0.005, 0.01), samples: bool = True) -> list[dict[str, object]]:
    """One row per kind of clip set and size: the metric's mean, sd, min and max over the draws
    (no training-clip rows at sizes larger than the data)."""
    from ebm_video.metrics import VideoMetrics

    if min(*sizes, draws) < 2 or min(noise, default=0) < 0:
        raise EbmError(f"--sizes and --draws must be at least 2 and --noise not negative, "
                       f"got {list(sizes)}, {draws} and {list(noise)}")
    run = Run.open(run_dir)
    train, heldout = run.data.dataset().x, run.data.heldout().x
    if train.dim() != 5:
        raise EbmError(f"{run_dir}'s data are not clips (N, C, T, H, W): {tuple(train.shape)}")
    metric, g = VideoMetrics(train, heldout), torch.Generator().manual_seed(0)

    def training(k: int) -> torch.Tensor | None:  # no repeats: more clips than the data have is None
        return train[torch.randperm(len(train), generator=g)[:k]] if k <= len(train) else None

    def gaussian(k: int) -> torch.Tensor:
        return fitted_gaussian(train, k, rng=g)

    def plus(draw: Callable[[int], torch.Tensor | None], std: float) -> Callable[[int], torch.Tensor | None]:
        def noisy(k: int) -> torch.Tensor | None:
            x = draw(k)
            return None if x is None else x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)
        return noisy

    kinds: list[tuple[str, Callable[[int], torch.Tensor | None]]] = [("training clips (floor)", training),
                                                                      ("fitted Gaussian", gaussian)]
    kinds += [(f"fitted Gaussian + noise {s:g}", plus(gaussian, s)) for s in noise]
    kinds += [(f"training clips + noise {s:g}", plus(training, s)) for s in noise]
    if samples:
        kinds.append(("samples", lambda k: run.objective.sample(k, rng=g).detach().cpu()))
    out = []
    for name, draw in kinds:
        for size in sizes:
            scores = [metric.distance(x) for x in (draw(size) for _ in range(draws)) if x is not None]
            if scores:
                out.append({"clips": name, "n": size, "mean": statistics.mean(scores),
                            "sd": statistics.stdev(scores), "min": min(scores), "max": max(scores)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256],
                        help="clips per draw (32: the recipes' eval_samples)")
    parser.add_argument("--draws", type=int, default=8, help="draws of each size per row")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.005, 0.01], help="white-noise stds")
    parser.add_argument("--no-samples", action="store_true", help="leave out the run's own samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        table = rows(args.run_dir, sizes=tuple(args.sizes), draws=args.draws, noise=tuple(args.noise),
                     samples=not args.no_samples)
    except EbmError as exc:
        sys.exit(f"error: {exc}")
    print(f"{'clips':30s} {'n':>4s} {'mean':>7s} {'sd':>7s} {'min':>7s} {'max':>7s}")
    for r in table:
        print(f"{r['clips']:30s} {r['n']:4d}", *(f"{r[k]:7.3f}" for k in ("mean", "sd", "min", "max")))


if __name__ == "__main__":
    main()
