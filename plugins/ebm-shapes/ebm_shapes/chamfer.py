"""Scores of point clouds ``(n, N, 3)``: the Chamfer distance and, after Achlioptas et al.
(2018, "Learning Representations and Generative Models for 3D Point Clouds"), the coverage
and minimum matching distance (MMD) of a set of samples against the held-out clouds, both
in Chamfer distance.

- ``chamfer(a, b)``: per pair, the mean squared distance from each point of a to its
  nearest point of b plus the same from b to a (lower is closer);
- ``mmd_cd``: for each held-out cloud the Chamfer distance of its nearest sample, averaged
  (fidelity: lower is better);
- ``coverage_cd``: the share of held-out clouds that are the nearest of at least one sample
  (diversity: higher is better).

Beside each, measured the same way on as many clouds as samples: training clouds
(``/heldout``: the floor of a perfect model, as in the kit's naming), noise uniform in the
unit ball (``/noise``) and the simplest model (``/gaussian``: each cloud N i.i.d. draws of
the one 3-D Gaussian fitted to all training points).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmcore.kit.metrics import beside


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Chamfer distance of the pairs of clouds a[i] (N, 3) and b[i] (M, 3)."""
    d = torch.cdist(a.detach().float(), b.detach().float()).pow(2)
    return d.amin(2).mean(1) + d.amin(1).mean(1)


def chamfer_matrix(a: Tensor, b: Tensor, *, chunk: int = 64) -> Tensor:
    """(len(a), len(b)) Chamfer distance of every pair of clouds."""
    a, b = a.detach().cpu().float(), b.detach().cpu().float()
    out = torch.empty(len(a), len(b))
    for i in range(0, len(a), chunk):
        ai = a[i:i + chunk]
        for j in range(len(b)):
            d = torch.cdist(ai, b[j].expand(len(ai), -1, -1)).pow(2)
            out[i:i + chunk, j] = d.amin(2).mean(1) + d.amin(1).mean(1)
    return out


def mmd_coverage(samples: Tensor, reference: Tensor) -> tuple[float, float]:
    """(MMD-CD, COV-CD) from one distance matrix."""
    d = chamfer_matrix(samples, reference)
    return float(d.amin(0).mean()), len(set(d.argmin(1).tolist())) / len(reference)


def mmd_cd(samples: Tensor, reference: Tensor) -> float:
    """Minimum matching distance: each reference cloud's nearest sample (Chamfer), averaged."""
    return float(chamfer_matrix(reference, samples).amin(1).mean())


def coverage_cd(samples: Tensor, reference: Tensor) -> float:
    """The share of reference clouds that are the nearest (Chamfer) of some sample."""
    nearest = chamfer_matrix(samples, reference).argmin(1)
    return len(set(nearest.tolist())) / len(reference)


def ball_noise(n: int, points: int, g: torch.Generator) -> Tensor:
    """(n, points, 3) uniform in the unit ball."""
    d = torch.randn(n, points, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return d * torch.rand(n, points, 1, generator=g).pow(1 / 3)


def point_gaussian(train: Tensor, n: int, g: torch.Generator) -> Tensor:
    """(n, N, 3): each cloud N i.i.d. draws of the 3-D Gaussian fitted to all training points."""
    p = train.reshape(-1, 3).double()
    mean, cov = p.mean(0), torch.cov(p.T)
    factor = torch.linalg.cholesky(cov + 1e-9 * torch.eye(3, dtype=cov.dtype))
    z = torch.randn(n, train.shape[1], 3, generator=g, dtype=torch.float64)
    return (mean + z @ factor.T).float()


class ChamferMetrics:
    """``mmd_cd`` and ``coverage_cd`` of samples against the held-out clouds, beside training
    clouds, a per-point Gaussian and noise in the ball (computed once per sample count)."""

    def __init__(self, train: Tensor, heldout: Tensor, *, seed: int = 0):
        self.train, self.reference, self.seed = train, heldout, seed
        self._sticks: dict[int, dict[str, dict[str, float]]] = {}

    def scores(self, x: Tensor) -> dict[str, float]:
        mmd, cov = mmd_coverage(x, self.reference)
        return {"mmd_cd": mmd, "coverage_cd": cov}

    def yardsticks(self, n: int) -> dict[str, dict[str, float]]:
        """{score: {"heldout": training clouds, "noise": …, "gaussian": …}} for n clouds."""
        if n not in self._sticks:
            g = torch.Generator().manual_seed(self.seed)
            clouds = {"heldout": self.train[torch.randperm(len(self.train), generator=g)[:n]],
                      "noise": ball_noise(n, self.train.shape[1], g),
                      "gaussian": point_gaussian(self.train, n, torch.Generator().manual_seed(self.seed + 1))}
            scored = {k: self.scores(c) for k, c in clouds.items()}
            self._sticks[n] = {name: {k: v[name] for k, v in scored.items()} for name in ("mmd_cd", "coverage_cd")}
        return self._sticks[n]

    def __call__(self, samples: Tensor) -> dict[str, float]:
        if len(samples) < 1:
            return {}
        sticks = self.yardsticks(min(len(samples), len(self.train)))
        out: dict[str, float] = {}
        for name, value in self.scores(samples.detach().cpu().float()).items():
            out |= beside(name, value, sticks[name])
        return out
