"""Missing regions, and the condition a completion model sees.

A completion model (conditional cooperative learning, seed 001; the EBM with a VAE
sampler's image completion, seed 002) learns p(x | observed part of x). Its condition is
one convention shared by objectives, energies and generators of any plugin:
``completion_condition(x, missing)`` = the observed image with the hole zeroed, and one
more channel that is 1 on the hole, concatenated on the channel dimension (1; the last,
``dim = -1``, for point clouds ``(n, N, 3)``, whose rows are points).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ebmcore.errors import EbmError

Region = Literal["centre", "random", "bottom"]


def hole_mask(shape: tuple[int, ...], hole: int, region: Region, rng: torch.Generator) -> Tensor:
    """Boolean ``(n, C, H, W)`` on the CPU, true where pixels are *missing* (the same hole on every channel).

    ``centre``: a ``hole × hole`` square in the middle; ``random``: such a square at a place
    drawn per image from ``rng``; ``bottom``: the last ``hole`` rows.
    """
    n, c, h, w = shape
    missing = torch.zeros(n, 1, h, w, dtype=torch.bool)
    if region == "centre":
        top, left = (h - hole) // 2, (w - hole) // 2
        missing[:, :, top:top + hole, left:left + hole] = True
    elif region == "random":
        tops = torch.randint(0, h - hole + 1, (n,), generator=rng, device=rng.device).cpu()
        lefts = torch.randint(0, w - hole + 1, (n,), generator=rng, device=rng.device).cpu()
        for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist())):
            missing[i, :, t:t + hole, l:l + hole] = True
    elif region == "bottom":
        missing[:, :, h - hole:, :] = True
    else:
        raise ValueError(f"region must be 'centre', 'random' or 'bottom', got {region!r}")
    return missing.expand(n, c, h, w)


def completion_condition(x: Tensor, missing: Tensor, dim: int = 1) -> Tensor:
    """x with missing values zeroed, then the missing indicator (channel 0 of ``missing``, like
    x), concatenated on the channel dimension ``dim``: ``(n, C + 1, …)`` for ``dim = 1``."""
    observed = torch.where(missing, torch.zeros_like(x), x)
    return torch.cat([observed, missing.narrow(dim, 0, 1).to(x.dtype)], dim=dim)


def missing_from_condition(cond: Tensor) -> Tensor:
    """The boolean missing mask ``(n, C, …)`` a :func:`completion_condition` was made from."""
    return (cond[:, -1:] > 0.5).expand_as(cond[:, :-1])


def check_completes(ctx, who: str) -> None:
    """For a task completing ``by = "objective"``: the recipe's objective must be a completion
    model (:attr:`ebmcore.Objective.completes`), found when the task is built, not after training."""
    objective = ctx.require("objective", who)
    if not objective.completes:
        raise EbmError(f"{who}: by = 'objective' needs an objective with a completion model (e.g. masked_mle, "
                       f"point_completion_dsm, clip_completion_dsm, coop with a completion generator); "
                       f"{type(objective).__name__} has none: use by = 'sampler'")
