"""A permutation-invariant energy of point clouds ``(N, 3)`` after Generative PointNet (Xie
et al., CVPR 2021, "Generative PointNet: Deep Energy-Based Learning on Unordered Point Sets
for 3D Generation, Reconstruction and Classification"): a shared per-point MLP, a symmetric
pooling over the points (mean, max, or both concatenated), an MLP head to a scalar, and the
optional Gaussian reference Σ‖xᵢ‖²/(2σ²). Reordering the points changes nothing: the MLP
acts on each point alone and the pooling is symmetric. To make that hold bit for bit (a
matrix product's rounding may depend on a row's place in the batch, a mean's on the order
it sums in), the points are first put in a canonical order, lexicographic in (x, y, z);
only identical points tie, and their order does not matter.
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


def _sizes(_inst, _attr, value):
    if not value or min(value) < 1:
        raise ValueError(f"must be a non-empty list of positive sizes, got {list(value)}")


def _widths(_inst, _attr, value):
    if value and min(value) < 1:
        raise ValueError(f"must be positive sizes, got {list(value)}")


@attrs.frozen
class PointNetConfig:
    """Generative PointNet (Xie et al. 2021): a shared per-point MLP, symmetric pooling, an MLP head."""

    point_layers: tuple[int, ...] = attrs.field(default=(64, 128, 256), validator=_sizes,
                                                metadata={"doc": "widths of the shared per-point MLP"})
    head_layers: tuple[int, ...] = attrs.field(default=(256,), validator=_widths,
                                               metadata={"doc": "hidden widths of the head after pooling "
                                                                "(empty: a linear read-out)"})
    pooling: Literal["mean", "max", "both"] = cfg.doc(
        "symmetric pooling over the points: mean (every point gets a gradient), max (PointNet's), "
        "or both concatenated", default="mean")
    activation: Literal["relu", "swish", "leaky_relu"] = cfg.doc("after each hidden layer", default="swish")
    reference_std: float | None = reference_std_field(
        "σ of the Gaussian reference Σᵢ‖xᵢ‖²/(2σ²); unset: none")


def canonical(x: Tensor) -> Tensor:
    """(B, N, D): each cloud's points sorted lexicographically by their coordinates (stable
    sorts from the last coordinate to the first); differentiable (a gather)."""
    order = torch.arange(x.shape[1], device=x.device).expand(x.shape[:2])
    for k in reversed(range(x.shape[2])):
        key = x.detach()[..., k].gather(1, order)
        order = order.gather(1, torch.sort(key, dim=1, stable=True).indices)
    return x.gather(1, order[..., None].expand_as(x))


def _mlp(sizes: tuple[int, ...], activation: str, *, last: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    return layers if last else layers[:-1]


class PointNetEnergy(Energy):
    """E(X) = head(pool_i f(x_i)) + Σᵢ‖xᵢ‖²/(2σ²), X (B, N, D)."""

    def __init__(self, point: nn.Module, head: nn.Module, pooling: str, reference_std: float | None):
        super().__init__()
        self.point, self.head, self.pooling, self.reference_std = point, head, pooling, reference_std

    @classmethod
    def from_config(cls, c: PointNetConfig, ctx) -> PointNetEnergy:
        who = "energy 'pointnet'"
        shape = ctx.need_event_shape(who)
        if len(shape) != 2:
            raise EbmError(f"{who} needs point clouds (points, coordinates), the data are {tuple(shape)}")
        point = nn.Sequential(*_mlp((shape[1], *c.point_layers), c.activation, last=True))
        pooled = c.point_layers[-1] * (2 if c.pooling == "both" else 1)
        head = nn.Sequential(*_mlp((pooled, *c.head_layers, 1), c.activation, last=False))
        return cls(point, head, c.pooling, c.reference_std)

    def features(self, x: Tensor) -> Tensor:
        """(B, F): the pooled per-point features, the input of the head."""
        return self._pooled(canonical(x))

    def _pooled(self, x: Tensor) -> Tensor:
        f = self.point(x)
        if self.pooling == "mean":
            return f.mean(1)
        if self.pooling == "max":
            return f.amax(1)
        return torch.cat([f.mean(1), f.amax(1)], 1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = canonical(x)
        e = self.head(self._pooled(x))[:, 0]
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e
