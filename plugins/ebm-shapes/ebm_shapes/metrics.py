"""Scores of voxel shapes ``(N, 1, R, R, R)`` in [−1, 1], occupied where > 0.

- ``iou``: the intersection over union of two occupancies;
- ``nearest_iou``: for each sample the IoU of the held-out shape most like it, averaged
  (fidelity: do the samples look like real shapes?);
- ``coverage``: the share of the held-out shapes that are the nearest (by IoU) of at least
  one sample (diversity: do the samples spread over the shapes?).

Beside each, measured the same way with as many examples as samples: training shapes
(``/heldout``: the floor of a perfect model), uniform noise (``/noise``) and a Gaussian
fitted to the training shapes (``/gaussian``), as :class:`ebmcore.kit.metrics.Yardsticks`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmcore.kit.metrics import Yardsticks, beside


def occupied(x: Tensor) -> Tensor:
    """(N, R³) bool: the cells > 0."""
    return (x.detach().cpu().flatten(1) > 0)


def iou(a: Tensor, b: Tensor) -> Tensor:
    """Per-row IoU of two batches of shapes (values > 0 occupied); 1 where both are empty."""
    a, b = occupied(a), occupied(b)
    inter, union = (a & b).sum(1).float(), (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """(len(a), len(b)) IoU of every pair."""
    a, b = occupied(a).float(), occupied(b).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class ShapeMetrics:
    """``nearest_iou`` and ``coverage`` of samples against the held-out shapes, beside their yardsticks."""

    def __init__(self, train: Tensor, heldout: Tensor, *, seed: int = 0):
        self.reference = heldout
        noise = lambda n, g: torch.rand((n, *train.shape[1:]), generator=g) * 2 - 1
        self.scores = {"nearest_iou": self.nearest_iou, "coverage": self.coverage}
        self.sticks = {name: Yardsticks(score, train=train, heldout=train, noise=noise, seed=seed)
                       for name, score in self.scores.items()}
        self.n_train = len(train)

    def nearest_iou(self, x: Tensor) -> float:
        return float(iou_matrix(x, self.reference).amax(1).mean())

    def coverage(self, x: Tensor) -> float:
        nearest = iou_matrix(x, self.reference).argmax(1)
        return len(set(nearest.tolist())) / len(self.reference)

    def __call__(self, samples: Tensor) -> dict[str, float]:
        if len(samples) < 1:
            return {}
        n = min(len(samples), self.n_train)
        out: dict[str, float] = {}
        for name, sticks in self.sticks.items():
            out |= beside(name, self.scores[name](samples), sticks(n))
        return out
