"""A cost over whole trajectories given their context: a 1-D temporal ConvNet over a window
``(T, C)`` — positions and context channels (a scene's obstacles, repeated at every time) —
whose top layer is summed over time (a cost that is a sum of local costs, as the true
navigation cost is) or read out linearly (a cost of the whole window), plus an optional
Gaussian reference ‖x‖²/(2σ²).

Convolutions in time see a point with its neighbours, so the net can price velocity and
curvature (smoothness) beside position (obstacles); ``dilation`` widens what the top layer
sees without more layers.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebmcore import EbmError, Energy
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS
from ebmcore.kit.likelihood import reference_std_field


@attrs.frozen
class TemporalConvNetConfig:
    """A 1-D temporal ConvNet cost over trajectories (T, channels): convolutions in time, summed or read out."""

    channels: tuple[int, ...] = attrs.field(default=(64, 64, 64), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of each 1-D convolution"})
    kernel: int = attrs.field(default=3, validator=attrs.validators.ge(1),
                              metadata={"doc": "kernel size in time (odd keeps the length)"})
    dilation: bool = cfg.doc("dilate layer i by 2^i (a wider view in time)", default=False)
    activation: Literal["silu", "softplus", "tanh", "elu"] = cfg.doc("after each convolution (smooth ones "
                                                                     "give smooth costs)", default="silu")
    top: Literal["sum", "linear"] = cfg.doc("'sum': a 1×1 read-out summed over time (a sum of local costs); "
                                            "'linear': a linear layer on the whole top layer", default="sum")
    reference_std: float | None = reference_std_field()

    def __attrs_post_init__(self):
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (the layers keep the length), got {self.kernel}")


class TemporalConvNet(Energy):
    """E(x) for windows ``(n, T, C)``: convolutions over T with C input channels."""

    def __init__(self, features: nn.Module, head: nn.Module, *, stationary: bool, reference_std: float | None):
        super().__init__()
        self.features, self.head, self.stationary, self.reference_std = features, head, stationary, reference_std

    @classmethod
    def from_config(cls, c: TemporalConvNetConfig, ctx) -> TemporalConvNet:
        shape = ctx.need_event_shape("energy 'temporal_convnet'")
        if len(shape) != 2:
            raise EbmError(f"energy 'temporal_convnet' needs trajectories (time, channels), the data are {shape}")
        length, width = shape
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise((width, *c.channels))):
            d = 2**i if c.dilation else 1
            layers += [nn.Conv1d(a, b, c.kernel, padding=d * (c.kernel // 2), dilation=d),
                       ACTIVATIONS[c.activation]()]
        head = nn.Conv1d(c.channels[-1], 1, 1) if c.top == "sum" else nn.Linear(c.channels[-1] * length, 1)
        return cls(nn.Sequential(*layers), head, stationary=c.top == "sum", reference_std=c.reference_std)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.features(x.transpose(1, 2))
        e = self.head(h).flatten(1).sum(1) if self.stationary else self.head(h.flatten(1))[:, 0]
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e


@attrs.frozen
class SceneCostConfig:
    """A cost of 2-D paths among circular obstacles (data 'navigation'): a temporal ConvNet of the path plus a learned clearance cost."""

    channels: tuple[int, ...] = attrs.field(default=(32, 32), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of the path's 1-D convolutions (kernel 3)"})
    hidden: tuple[int, ...] = attrs.field(default=(32, 32), validator=cfg.positive_widths,
                                          metadata={"doc": "hidden widths of the clearance MLP g"})
    activation: Literal["silu", "softplus", "tanh", "elu"] = cfg.doc("after each layer", default="silu")


class SceneCost(Energy):
    """E(x) = Σ_t f(path around t) + Σ_t Σ_k g(‖p_t − c_k‖, ‖p_t − c_k‖ − r_k, r_k): f a 1-D
    ConvNet over the positions (length, smoothness), g an MLP of each point's clearance from
    each obstacle — the inductive bias of feature-based inverse optimal control (costs of
    distances, the same for every obstacle and invariant to rotations), both learned."""

    def __init__(self, path_net: nn.Module, clearance: nn.Module):
        super().__init__()
        self.path_net, self.clearance = path_net, clearance

    @classmethod
    def from_config(cls, c: SceneCostConfig, ctx) -> SceneCost:
        shape = ctx.need_event_shape("energy 'scene_cost'")
        if len(shape) != 2 or shape[1] < 5 or (shape[1] - 2) % 3:
            raise EbmError(f"energy 'scene_cost' needs scenes (time, 2 + 3·obstacles) (data 'navigation'), "
                           f"the data are {shape}")
        act = ACTIVATIONS[c.activation]
        layers: list[nn.Module] = []
        for a, b in pairwise((2, *c.channels)):
            layers += [nn.Conv1d(a, b, 3, padding=1), act()]
        path_net = nn.Sequential(*layers, nn.Conv1d(c.channels[-1], 1, 1))
        mlp: list[nn.Module] = []
        for a, b in pairwise((3, *c.hidden)):
            mlp += [nn.Linear(a, b), act()]
        return cls(path_net, nn.Sequential(*mlp, nn.Linear(c.hidden[-1], 1)))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        p = x[..., :2]
        obstacles = x[:, 0, 2:].reshape(len(x), -1, 3)
        e = self.path_net(p.transpose(1, 2)).flatten(1).sum(1)
        gap = (p.unsqueeze(2) - obstacles[:, None, :, :2]).pow(2).sum(3).add(1e-6).sqrt()  # (n, T, K)
        r = obstacles[:, None, :, 2].expand_as(gap)
        return e + self.clearance(torch.stack([gap, gap - r, r], 3)).flatten(1).sum(1)
