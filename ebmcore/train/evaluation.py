"""Evaluation during training (fresh-chain samples: scored, drawn, saved) and the recipe's tasks."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch

from ebmcore.data import Data
from ebmcore.interfaces import Objective, Task
from ebmcore.kit.files import atomic_write
from ebmcore.train.divergence import Diverged, Divergence
from ebmcore.train.seeds import make_rng


class Evaluation:
    """Samples of the model by fresh chains, from an RNG derived from the seed and the step
    (evaluating never shifts training); ``picture`` calls ``on_picture(step, tag, path)``
    for every picture written. Tasks that ask for it (:attr:`ebmcore.Task.every_evaluation`)
    run at every scored evaluation before the last (the last runs all tasks after it)."""

    def __init__(self, out: Path, data: Data, objective: Objective, energy: torch.nn.Module,
                 tasks: dict[str, Task], *, seed: int, samples: int, device: torch.device,
                 on_picture: Callable[[int, str, Path], None]):
        self.out, self.data, self.objective, self.energy = out, data, objective, energy
        self.seed, self.samples, self.device, self.on_picture = seed, samples, device, on_picture
        self.tasks = {label: task for label, task in tasks.items() if task.every_evaluation}

    def __call__(self, step: int, *, score: bool, picture: bool, final: bool) -> dict[str, float]:
        """Fresh-chain samples: scored, drawn, and at the end saved with the data's figures."""
        rng = make_rng(self.seed, f"eval/{step}", self.device)
        # eval mode: sampling must not change the model (BatchNorm's running statistics in a
        # generator) and uses what a trained model uses; the next step sets train mode again
        self.objective.eval()
        samples = self.objective.sample(self.samples, rng=rng).cpu()
        if not torch.isfinite(samples).all():
            raise Diverged(Divergence(step, (("fresh samples", math.nan, "non-finite"),)))
        if picture:
            (self.out / "samples").mkdir(exist_ok=True)
            self._draw(step, "samples", samples, self.out / "samples" / f"step-{step:06d}.png")
        if final:
            self._draw(step, "final/samples", samples, self.out / "samples.png")
            atomic_write(self.out / "samples.safetensors", safetensors.torch.save({"x": samples}))
            for path in self.data.report(self.out, samples, self.energy):
                self.on_picture(step, f"final/{Path(path).stem}", Path(path))
        if not score:
            return {}
        metrics = self.data.evaluate(samples)
        if self.tasks and not final:
            metrics.update(run_tasks(self.tasks, self.objective, self.data, seed=self.seed, device=self.device,
                                     out=self.out / "evaluations" / f"step-{step:06d}"))
        return metrics

    def _draw(self, step: int, tag: str, samples: torch.Tensor, path: Path) -> None:
        self.data.save_samples(samples, path)
        self.on_picture(step, tag, path)


def run_tasks(tasks: dict[str, Task], objective: Objective, data: Data, *, seed: int, device: torch.device,
              out: Path) -> dict[str, float]:
    """Run every task on the current model, each with its own RNG (``task/<label>``); write
    ``tasks.json`` (label → metrics) and the tasks' pictures under ``out``; return the
    metrics as ``<label>/<metric>``."""
    objective.eval()
    results: dict[str, dict[str, float]] = {}
    for label, task in tasks.items():
        folder = out / "tasks" / label
        folder.mkdir(parents=True, exist_ok=True)
        metrics = task.run(objective, data, rng=make_rng(seed, f"task/{label}", device), out=folder)
        results[label] = {k: float(v) for k, v in metrics.items()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "tasks.json", (json.dumps(results, indent=1) + "\n").encode())
    return {f"{label}/{k}": v for label, m in results.items() for k, v in m.items()}
