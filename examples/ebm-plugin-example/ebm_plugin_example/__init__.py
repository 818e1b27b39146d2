"""An example third-party plugin: a quadratic energy E(x) = ½ (x − μ)ᵀ LLᵀ (x − μ).

Its exp(−E) is a Gaussian with learnable mean and precision, so a maximum-likelihood run
with it fits a Gaussian to the data: a model whose right answer is known.
"""

import math

import attrs
import torch
from torch import nn

import ebmcore
from ebmcore import Component, Energy, hookimpl


@attrs.frozen
class QuadraticConfig:
    """Learnable Gaussian energy ½ (x − μ)ᵀ LLᵀ (x − μ) (an example third-party component)."""

    init_scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0),
                                    metadata={"doc": "initial standard deviation of the Gaussian"})


class QuadraticEnergy(Energy):
    def __init__(self, dim: int, init_scale: float = 1.0):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.chol = nn.Parameter(torch.eye(dim) / init_scale)  # L, precision = L Lᵀ

    @classmethod
    def from_config(cls, c: QuadraticConfig, ctx: ebmcore.BuildContext) -> "QuadraticEnergy":
        return cls(math.prod(ctx.need_event_shape("energy 'quadratic'")), c.init_scale)

    def forward(self, x, cond=None):
        z = (x.flatten(1) - self.mean) @ torch.tril(self.chol)
        return 0.5 * z.pow(2).sum(1)


@hookimpl
def ebm_components():
    return [Component("energy", "quadratic", QuadraticConfig, QuadraticEnergy.from_config)]
