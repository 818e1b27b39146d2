"""Retrieval of training windows by their observed part, and the objective that learns a cost
to rank what is retrieved.

``retrieval_nce`` is ranking noise-contrastive estimation (Jozefowicz et al. 2016; Ma &
Collins 2018, "Noise contrastive estimation and negative sampling for conditional models")
with retrieval as the noise distribution: for each training window, its own future and the
futures of its ``k`` nearest training windows (by the observed part, those overlapping it in
time left out) are the candidates for its past, and the cost is trained to pick the true one,

    loss = −log softmax_j(−E(past, future_j))[true]  (+ α·mean E² over the candidates),

so E(past, ·) orders futures by how well they continue that past. The noise's own density is
not subtracted from the logits (a retrieved set has none to give), so E is a ranking cost
relative to retrieval — what a forecast that ranks retrieved futures needs (task
``forecast`` with ``start = "neighbours"``, ``n_steps = 0``), not a normalised density.
Why not maximum likelihood: short-run chains from a guess learned a cost that is low along
the chains' path, not at real futures, and it ranked retrieved futures at chance
(docs/results.md, "Motion forecasting").

``complete`` and ``sample`` (the run's evaluation samples: the held-out windows' pasts)
fill the free part with the lowest-cost of the ``k`` futures retrieved for it (``sample``: n
pasts spread evenly over the held-out split).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ebm_trajectory.data import TrajectoryData, spread
from ebmcore import Batch, EbmError, Objective
from ebmcore import config as cfg


def neighbour_indices(x: Tensor, observed: Tensor, train: Tensor, k: int,
                      exclude: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``(n, k)``: the training windows whose observed entries are nearest each window of
    ``x`` (L2), nearest first. ``exclude(rows)`` gives a bool ``(len(rows), len(train))``,
    True where a training window may not be a neighbour of ``x[rows]``."""
    flat = observed[0].flatten()
    q, t = x.flatten(1)[:, flat].double(), train.flatten(1)[:, flat].double()
    best = []
    for rows in torch.arange(len(q), device=q.device).split(512):
        d = torch.cdist(q[rows], t)
        if exclude is not None:
            d = d.masked_fill(exclude(rows), float("inf"))
        best.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(best)


def nearest_neighbours(x: Tensor, observed: Tensor, train: Tensor, k: int = 1,
                       exclude: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``(k, n, T, C)``: ``x`` with its free entries copied from each of the ``k`` training
    windows whose observed entries are nearest (L2), nearest first."""
    best = neighbour_indices(x, observed, train, k, exclude)
    return torch.stack([torch.where(observed, x, train[best[:, j]]) for j in range(k)])


@attrs.frozen
class RetrievalNCEConfig:
    """Ranking NCE: each training window's own future ranked above the futures retrieved for its observed part."""

    k: int = cfg.positive("futures retrieved for each window (its k nearest training windows by the observed "
                          "part, those overlapping it in time left out), ranked against its own", default=8)
    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·mean E² over the candidates",
                                    default=0.01)


class RetrievalNCE(Objective):
    completes = True

    def __init__(self, energy, data: TrajectoryData, c: RetrievalNCEConfig, device):
        super().__init__()
        self.energy, self.data, self.c = energy, data, c
        self.windows = data.dataset().x.to(device)
        self.contexts = data.heldout()

    @classmethod
    def from_config(cls, c: RetrievalNCEConfig, ctx) -> RetrievalNCE:
        who = "objective 'retrieval_nce'"
        data = ctx.require("data", who)
        if not isinstance(data, TrajectoryData):
            raise EbmError(f"{who} needs trajectory windows (data 'mocap' or 'navigation')")
        if c.k >= len(data.dataset().x):
            raise EbmError(f"{who}: k = {c.k} needs more training windows than {len(data.dataset().x)} "
                           f"($.objective.k)")
        return cls(ctx.require("energy", who), data, c, ctx.device)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x, observed = batch
        if observed is None or observed.dtype != torch.bool:
            raise EbmError("objective 'retrieval_nce' needs the observed mask as the batch's cond")
        # each window is its own nearest, matched whole (two windows may share a past)
        rows = neighbour_indices(x, torch.ones_like(observed), self.windows, 1)[:, 0]
        if not torch.equal(self.windows[rows], x):
            raise EbmError("objective 'retrieval_nce' trains on the data's own training windows; a batch "
                           "holds a window that is not one of them")
        near = neighbour_indices(x, observed, self.windows, self.c.k,
                                 exclude=lambda r: self.data.overlapping(rows[r].cpu()).to(x.device))
        candidates = torch.stack([x] + [torch.where(observed, x, self.windows[near[:, j]])
                                        for j in range(self.c.k)])  # (1 + k, B, T, C), the truth first
        e = self.energy(candidates.flatten(0, 1)).view(1 + self.c.k, len(x))
        logits = -e.T
        nce = F.cross_entropy(logits, torch.zeros(len(x), dtype=torch.long, device=x.device))
        loss = nce + self.c.alpha * e.pow(2).mean()
        metrics = {"loss/nce": nce.detach(), "rank/top1": (logits.argmax(1) == 0).float().mean(),
                   "energy/data": e[0].mean().detach(), "energy/retrieved": e[1:].mean().detach()}
        return {"energy": loss}, metrics

    @torch.no_grad()
    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """The lowest-cost of the ``k`` futures retrieved for each window's observed part."""
        candidates = nearest_neighbours(x, ~missing, self.windows, self.c.k)
        e = self.energy(candidates.flatten(0, 1)).view(self.c.k, len(x))
        return candidates[e.argmin(0), torch.arange(len(x), device=x.device)]

    def sample(self, n, *, rng, cond=None):
        idx = spread(n, len(self.contexts.x))
        x, observed = self.contexts.x[idx].to(self.windows.device), self.contexts.cond[idx].to(self.windows.device)
        return self.complete(x, ~observed, rng=rng)
