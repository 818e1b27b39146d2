"""The spatial-temporal generative ConvNet (Xie, Zhu & Wu 2017): an energy of whole clips
``(C, T, H, W)``, bottom-up 3-D convolutions whose top-layer responses are summed over
every position in space and time, plus the Gaussian reference ‖x‖²/(2σ²).

Summing over positions makes the model stationary in space and time, which is what a
dynamic texture is (the paper's "spatial-temporal stationary" patterns): the energy of a
clip is a sum of local energies, so a model trained on 64×64 clips of 8 frames can be
sampled at any other size or length. ``top = "linear"`` replaces the sum by a linear layer
on the flattened top layer (a model of whole clips: non-stationary patterns, moving digits).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Energy
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS, check_per_layer
from ebmcore.kit.likelihood import reference_std_field


def _triples(_inst, attribute, value):
    if not value or any(len(v) != 3 or min(v) < 1 for v in value):
        raise ValueError(f"must be a non-empty list of [time, height, width] triples of positive sizes, "
                         f"got {[list(v) for v in value]}")


@attrs.frozen
class STConvNetConfig:
    """Spatial-temporal generative ConvNet (Xie et al. 2017): 3-D convolutions, responses summed."""

    channels: tuple[int, ...] = attrs.field(default=(32, 32, 16), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of each 3-D conv layer"})
    kernels: tuple[tuple[int, int, int], ...] = attrs.field(
        default=((3, 5, 5), (3, 3, 3), (2, 3, 3)), validator=_triples,
        metadata={"doc": "[time, height, width] kernel of each layer (as many as channels)"})
    strides: tuple[tuple[int, int, int], ...] = attrs.field(
        default=((1, 2, 2), (1, 2, 2), (1, 1, 1)), validator=_triples,
        metadata={"doc": "[time, height, width] stride of each layer (as many as channels)"})
    activation: Literal["relu", "swish", "leaky_relu"] = cfg.doc("after each layer (the paper: ReLU)",
                                                                 default="swish")
    top: Literal["sum", "linear"] = cfg.doc("'sum': the top layer's responses summed over space and time "
                                            "(stationary; any clip size); 'linear': a linear layer on them",
                                            default="sum")
    reference_std: float | None = reference_std_field(
        "σ of the Gaussian reference ‖x‖²/(2σ²) (the paper's; Langevin steps must then stay below 2σ²); "
        "unset: none")

    def __attrs_post_init__(self):
        check_per_layer(self.channels, self.kernels, self.strides)




class STConvNet(Energy):
    """E(x) = −Σ top-layer responses (or a linear read-out) + ‖x‖²/(2σ²), x a batch of clips."""

    def __init__(self, features: nn.Module, head: nn.Module, reference_std: float | None, *, stationary: bool):
        super().__init__()
        self.features, self.head, self.reference_std = features, head, reference_std
        self.stationary = stationary

    @classmethod
    def from_config(cls, c: STConvNetConfig, ctx) -> "STConvNet":
        shape = ctx.need_event_shape("energy 'stconvnet'")
        if len(shape) != 4:
            raise ValueError(f"energy 'stconvnet' needs clips (channels, frames, height, width), the data are {shape}")
        layers: list[nn.Module] = []
        for (a, b), k, s in zip(pairwise((shape[0], *c.channels)), c.kernels, c.strides, strict=True):
            layers += [nn.Conv3d(a, b, tuple(k), stride=tuple(s), padding=tuple(n // 2 for n in k)),
                       ACTIVATIONS[c.activation]()]
        features = nn.Sequential(*layers)
        with torch.no_grad():  # padding k // 2 keeps at least one position in every dimension
            top = features(torch.zeros(1, *shape)).shape
        head = nn.Conv3d(c.channels[-1], 1, 1) if c.top == "sum" else nn.Linear(top[1:].numel(), 1)
        return cls(features, head, c.reference_std, stationary=c.top == "sum")

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.features(x)
        # the sign of the read-out is learned: −Σ responses and +Σ are the same family
        e = self.head(h).flatten(1).sum(1) if self.stationary else self.head(h.flatten(1))[:, 0]
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e
