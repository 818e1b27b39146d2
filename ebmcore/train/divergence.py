"""Divergence: the guard that finds the first step whose metrics are non-finite or whose
energies explode, and the policy applied then (``run.on_divergence``: stop, or roll back).

Every step's metrics (losses, the objective's metrics such as ``energy/data`` and
``energy/sample``, and ``grad_norm/<group>``, which is non-finite as soon as one gradient
is) are reduced on the device to one vector; the first bad step, its values and which
entries were bad are kept there with ``torch.where``, so observing costs no host sync.

:meth:`DivergenceGuard.poll` is called every step. On the CPU reading the result is free,
so a divergence is known at the step it happens. On an accelerator the first-bad step is
copied to pinned host memory without blocking and read one step later, after waiting
for *that* step's copy only (the device still has the current step queued, so it never
idles): a divergence is known at most one step late, and its step is exact.
:meth:`settle` reads the state with a sync; the runner calls it before anything is
logged or saved, so no record and no checkpoint is ever written from a diverged model.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor

from ebmcore.errors import DivergenceError

if TYPE_CHECKING:
    from ebmcore.train.recipe import RunConfig
    from ebmcore.train.state import Checkpoints


@attrs.frozen
class Divergence:
    """The first bad step and what was bad in it."""

    step: int
    #: (quantity, value, why): why is "non-finite" or "above max_abs_energy"
    bad: tuple[tuple[str, float, str], ...]
    limit: float | None = None

    def describe(self) -> str:
        nonfinite = [f"{q} ({v})" for q, v, why in self.bad if why == "non-finite"]
        big = [f"|{q}| = {abs(v):.3g}" for q, v, why in self.bad if why != "non-finite"]
        parts = []
        if nonfinite:
            parts.append("non-finite " + ", ".join(nonfinite))
        if big:
            parts.append(", ".join(big) + f" above run.max_abs_energy = {self.limit:g}")
        return "; ".join(parts)


def is_energy(name: str) -> bool:
    """Metrics checked against ``max_abs_energy``: ``energy/…`` (e.g. ``energy/sample@16``)."""
    return name.startswith("energy/")


class DivergenceGuard:
    def __init__(self, device: torch.device, max_abs_energy: float | None = None):
        self.device = torch.device(device)
        self.limit = max_abs_energy
        self.keys: list[str] | None = None
        self.found: Divergence | None = None  # known on the host
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a rollback)."""
        self.keys = None
        self.found = None
        self._first = torch.tensor(-1, device=self.device)
        self._vals: Tensor | None = None
        self._flags: Tensor | None = None
        self._pending: tuple[torch.cuda.Event, Tensor] | None = None

    def observe(self, step: int, metrics: dict[str, Tensor]) -> None:
        """Record a step's metrics (0-d tensors; larger ones count by their largest |value|)."""
        keys = list(metrics)
        if keys != self.keys:
            if self.keys is not None:  # the metric names changed: read what we have first
                self.found = self.found or self.settle()
            self.keys = keys
            n = len(keys)
            self._vals = torch.zeros(n, device=self.device)
            self._flags = torch.zeros(n, dtype=torch.bool, device=self.device)
            self._energy = torch.tensor([is_energy(k) for k in keys], device=self.device)
        if not keys:
            return
        vals = torch.stack([_scalar(v).to(self.device) for v in metrics.values()])
        bad = ~torch.isfinite(vals)
        if self.limit is not None:
            bad = bad | (self._energy & (vals.abs() > self.limit))
        newly = (self._first < 0) & bad.any()
        self._first = torch.where(newly, step, self._first)
        self._vals = torch.where(newly, vals, self._vals)
        self._flags = torch.where(newly, bad, self._flags)

    def poll(self) -> Divergence | None:
        """The divergence, if known without stalling the device (see the module's doc)."""
        if self.found is not None:
            return self.found
        if self.device.type != "cuda":
            self.found = self.settle()
            return self.found
        host = torch.empty((), dtype=self._first.dtype, pin_memory=True)
        host.copy_(self._first, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self._pending = self._pending, (event, host)
        if previous is not None:
            previous[0].synchronize()  # the previous step's copy, not the current step
            if int(previous[1]) >= 0:
                self.found = self.settle()
        return self.found

    def settle(self) -> Divergence | None:
        """The divergence so far, reading the device (a sync)."""
        if self.found is not None:
            return self.found
        step = int(self._first)
        if step < 0 or self.keys is None:
            return None
        vals, flags = self._vals.tolist(), self._flags.tolist()
        bad = tuple((k, v, "non-finite" if not math.isfinite(v) else "above max_abs_energy")
                    for k, v, f in zip(self.keys, vals, flags) if f)
        self.found = Divergence(step, bad, self.limit)
        return self.found


def _scalar(v: Tensor) -> Tensor:
    v = v.detach().float()
    if v.numel() == 1:
        return v.reshape(())
    return v.abs().amax() if v.numel() else torch.zeros((), device=v.device)


class Diverged(Exception):
    """Raised inside a step; the loop applies ``run.on_divergence`` (:class:`Policy`)."""

    def __init__(self, divergence: Divergence):
        super().__init__(divergence.describe())
        self.divergence = divergence


class Policy:
    """``run.on_divergence``: stop (raise :class:`DivergenceError`), or roll back to the last
    good checkpoint with the learning rates scaled by ``rollback_lr_factor`` per rollback."""

    def __init__(self, config: RunConfig, guard: DivergenceGuard, checkpoints: Checkpoints):
        self.config, self.guard, self.checkpoints = config, guard, checkpoints

    def __call__(self, found: Divergence) -> None:
        c, state = self.config, self.checkpoints.state
        kept = [s for s in self.checkpoints.steps() if s < found.step]
        what = f"training diverged at step {found.step}: {found.describe()}"
        if c.on_divergence == "rollback" and len(state.rollbacks) >= c.max_rollbacks:
            what += f" (after {len(state.rollbacks)} rollbacks, run.max_rollbacks)"
        elif c.on_divergence == "rollback" and kept:
            rollbacks = state.rollbacks
            self.checkpoints.restore(before=found.step)
            scale = c.rollback_lr_factor ** (len(rollbacks) + 1)
            state.rollbacks = rollbacks + [{"step": found.step, "to": state.step, "lr_scale": scale,
                                            "why": found.describe()}]
            state.optimisers.scale_lr(scale)
            self.guard.reset()
            if self.checkpoints.world.is_main:
                print(f"warning: {what}; rolled back to step {state.step}, learning rates × {scale:g} "
                      f"(rollback {len(state.rollbacks)} of {c.max_rollbacks})", file=sys.stderr)
            return
        keep = f"the last good checkpoint is step {kept[-1]}" if kept else "no checkpoint was written yet"
        raise DivergenceError(f"{what}; stopped, {keep} (in {self.checkpoints.directory})")
