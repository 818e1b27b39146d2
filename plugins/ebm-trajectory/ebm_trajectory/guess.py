"""Where chains over the free part of a window start: a guess from the observed part alone.

``interpolate``: each free entry linearly interpolated in time between the nearest observed
entries of its channel, held constant after the last observed one (before the first: the
first); ``extrapolate``: the same, but after the last observed entry continued at its
channel's last observed velocity (constant velocity; held where the entry before it is not
observed). For a scene, interpolation is the straight line from start to goal; for a
motion, the last observed pose held (interpolate) or moved on at constant velocity
(extrapolate).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Guess = Literal["interpolate", "extrapolate"]


def guess(x: Tensor, observed: Tensor, how: Guess = "interpolate") -> Tensor:
    """``x`` ``(n, T, C)`` with its free entries (``observed`` false) replaced by the guess."""
    n, t, c = x.shape
    time = torch.arange(t, device=x.device).view(1, t, 1).expand(n, t, c)
    before = torch.where(observed, time, -1).cummax(1).values
    after = torch.where(observed, time, t).flip(1).cummin(1).values.flip(1)
    has_before, has_after = before >= 0, after < t
    b, a = before.clamp(0, t - 1), after.clamp(0, t - 1)
    xb, xa = x.gather(1, b), x.gather(1, a)
    w = torch.where(after > before, (time - before) / (after - before).clamp(min=1), torch.zeros_like(time))
    out = torch.where(has_before & has_after, xb + w * (xa - xb), torch.where(has_before, xb, xa))
    if how == "extrapolate":
        prev = (b - 1).clamp(min=0)
        ok = has_before & ~has_after & (b > 0) & observed.gather(1, prev)
        velocity = xb - x.gather(1, prev)
        out = torch.where(ok, xb + (time - before) * velocity, out)
    return torch.where(observed, x, out)
