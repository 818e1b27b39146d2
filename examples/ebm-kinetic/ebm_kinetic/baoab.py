"""Kinetic (underdamped) Langevin dynamics by the BAOAB splitting (Leimkuhler & Matthews 2013).

With momentum p ~ N(0, T·I) and friction γ, one step of size h is
B: p −= h/2·∇E(x); A: x += h/2·p; O: p ← e^(−γh)·p + √((1 − e^(−2γh))·T)·ξ; A; B.
It samples exp(−E/T) with an error of order h² (less than ULA's at the same step), one
gradient per step: the state carries ∇E. The momentum is drawn in ``init`` from the chain's
rng. Masked coordinates get no momentum and stay bit-identical.
"""

import math
from typing import NamedTuple

import attrs
import torch
from torch import Tensor

from ebmcore import Sampler, energy_and_grad
from ebmcore.config import compile_flag, positive
from ebmcore.kernel import normal_like


@attrs.frozen
class BAOABConfig:
    """Kinetic Langevin dynamics (BAOAB): momentum and friction, one gradient per step."""

    step_size: float = positive("time step h", default=0.1)
    friction: float = positive("friction γ: large γ damps the momentum at once (ULA-like)", default=1.0)
    temperature: float = positive("temperature T: samples exp(−E/T)", default=1.0)
    n_steps: int = positive("chain length", default=100)
    compile: bool = compile_flag()


class BAOABState(NamedTuple):
    x: Tensor
    p: Tensor
    grad: Tensor


class BAOAB(Sampler):
    Config = BAOABConfig

    def init(self, x, energy, *, rng, cond=None):
        p = normal_like(x, rng) * math.sqrt(self.config.temperature)
        return BAOABState(x, p, energy_and_grad(energy, x, cond)[1])

    def step(self, state, energy, *, rng, cond=None, mask=None):
        (x, p, g), c = state, self.config
        h, decay = c.step_size, math.exp(-c.friction * c.step_size)
        xi = normal_like(x, rng)
        if mask is not None:  # no momentum, force or noise on observed coordinates
            p, g, xi = p.masked_fill(mask, 0), g.masked_fill(mask, 0), xi.masked_fill(mask, 0)
        p = p - h / 2 * g
        x_half = x + h / 2 * p
        p = decay * p + math.sqrt((1 - decay**2) * c.temperature) * xi
        x_new = x_half + h / 2 * p
        if mask is not None:
            x_new = torch.where(mask, x, x_new)  # bit-identical
        _, g = energy_and_grad(energy, x_new, cond)
        return BAOABState(x_new, p - h / 2 * (g if mask is None else g.masked_fill(mask, 0)), g), ()
