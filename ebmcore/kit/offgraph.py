"""The guard every kernel's ``step`` carries: a chain's update never joins autograd's graph."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Step = TypeVar("Step", bound=Callable)


def off_graph(step: Step) -> Step:
    """``step`` re-entered under ``no_grad`` when called with grad enabled (outside
    ``run_chain``, which already runs without it). Entering ``no_grad`` only when needed
    saves its cost on every step of a chain."""
    @functools.wraps(step)
    def guarded(*args, **kwargs):
        if torch.is_grad_enabled():
            with torch.no_grad():
                return step(*args, **kwargs)
        return step(*args, **kwargs)
    return guarded  # type: ignore[return-value]
