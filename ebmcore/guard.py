"""The divergence guard: the first step whose metrics are non-finite or whose energies explode.

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

import attrs
import torch
from torch import Tensor


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
