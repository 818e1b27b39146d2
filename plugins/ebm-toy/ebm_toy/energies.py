"""A multilayer-perceptron energy for vector data."""

import math
from typing import Literal

import attrs
from torch import nn

from ebmcore import Energy
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS
from ebmcore.kit.likelihood import fitted_reference, reference_fit_field
from ebmcore.kit.memory import check_fits, tensor_bytes


@attrs.frozen
class MLPEnergyConfig:
    """MLP energy E(x) = f(flatten(x)) with hidden layers and a scalar output."""

    hidden: tuple[int, ...] = attrs.field(default=(128, 128), validator=cfg.positive_widths,
                                          metadata={"doc": "hidden layer widths"})
    activation: Literal["silu", "relu", "elu", "tanh", "leaky_relu", "softplus"] = cfg.doc(
        "activation between layers (smooth ones give smooth energies)", default="silu")
    spectral_norm: bool = cfg.doc("spectral normalisation of every linear layer", default=False)
    reference_std: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "add ‖x‖²/(2σ²), a Gaussian reference distribution (Xie et al. 2016)"})
    reference_fit: float | None = reference_fit_field()

class MLPEnergy(Energy):
    def __init__(self, in_features: int, hidden=(128, 128), activation: str = "silu",
                 spectral_norm: bool = False, reference_std: float | None = None,
                 reference: nn.Module | None = None):
        super().__init__()
        # the reference term keeps exp(−E) normalisable and pulls far-away chains back
        self.reference_std, self.reference = reference_std, reference
        layers: list[nn.Module] = []
        widths = [in_features, *hidden]
        for a, b in zip(widths, widths[1:]):
            layers += [_linear(a, b, spectral_norm), ACTIVATIONS[activation]()]
        layers.append(_linear(widths[-1], 1, spectral_norm))
        self.net = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, c: MLPEnergyConfig, ctx) -> "MLPEnergy":
        shape = ctx.need_event_shape("energy 'mlp'")
        widths = [math.prod(shape), *c.hidden, 1]
        n = sum(a * b + b for a, b in zip(widths, widths[1:]))  # weights and biases
        # training holds each parameter four times: the value, its gradient and Adam's two moments
        check_fits("$.energy.hidden", 4 * tensor_bytes(n),
                   what=f"{n:,} float32 parameters, each with its gradient and Adam's two moments")
        # the fitted Gaussian of the training set, normalised (the likelihood kit's AIS base)
        return cls(widths[0], c.hidden, c.activation, c.spectral_norm, c.reference_std,
                   fitted_reference(c.reference_fit, ctx, "energy 'mlp'"))

    def forward(self, x, cond=None):
        x = x.flatten(1)
        e = self.net(x).squeeze(-1)
        if self.reference_std is not None:
            e = e + x.pow(2).sum(1) / (2 * self.reference_std**2)
        if self.reference is not None:
            e = e + self.reference(x)
        return e


def _linear(a: int, b: int, sn: bool) -> nn.Module:
    layer = nn.Linear(a, b)
    return nn.utils.parametrizations.spectral_norm(layer) if sn else layer
