"""The energy of a label-conditional model from its read-out: one energy per label."""

from __future__ import annotations

import torch
from torch import Tensor


def label_energy(out: Tensor, cond: Tensor | None) -> Tensor:
    """E(x, y) from ``out`` (N, K), E(x, k) for every label k: the column of each example's
    label ``cond``, or without labels the marginal E(x) = −log Σ_y exp(−E(x, y))."""
    if cond is None:
        return -torch.logsumexp(-out, dim=1)
    return out.gather(1, cond.long().view(-1, 1)).squeeze(1)
