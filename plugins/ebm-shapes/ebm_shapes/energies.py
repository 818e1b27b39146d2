"""The 3-D descriptor network (Xie et al. 2018, "Learning Descriptor Networks for 3D Shape
Synthesis and Analysis"): an energy of voxel grids ``(C, R, R, R)``, bottom-up 3-D
convolutions with strides, then a linear read-out of the flattened top layer, plus the
optional Gaussian reference ‖x‖²/(2σ²) of the paper.

With ``condition = "label"`` the read-out has one output per class: E(x, y) is the y-th
(the paper's conditional model for shape classes), and without a label the marginal
−log Σ_y exp(−E(x, y)). :meth:`VoxelNet.features` gives the flattened top layer, the
representation a linear probe classifies (the paper's "analysis" half).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Condition, Energy
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS, check_per_layer
from ebmcore.kit.likelihood import reference_std_field
from ebmcore.kit.readout import label_energy


@attrs.frozen
class VoxelNetConfig:
    """3-D descriptor net (Xie et al. 2018): strided 3-D convolutions, a linear head; optionally per class."""

    channels: tuple[int, ...] = attrs.field(default=(16, 32, 64), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of each 3-D conv layer"})
    kernels: tuple[int, ...] = attrs.field(default=(4, 4, 4), validator=cfg.positive_widths,
                                           metadata={"doc": "cubic kernel side of each layer (as many as channels)"})
    strides: tuple[int, ...] = attrs.field(default=(2, 2, 2), validator=cfg.positive_widths,
                                           metadata={"doc": "stride of each layer (as many as channels)"})
    activation: Literal["relu", "swish", "leaky_relu"] = cfg.doc("after each layer (the paper: ReLU)",
                                                                 default="swish")
    condition: Literal["none", "label"] = cfg.doc(
        "'label': E(x, y), one head output per class of the data (its labels); 'none'", default="none")
    reference_std: float | None = reference_std_field(
        "σ of the Gaussian reference ‖x‖²/(2σ²) (the paper's; Langevin steps must then stay below 2σ²); "
        "unset: none")

    def __attrs_post_init__(self):
        check_per_layer(self.channels, self.kernels, self.strides)


class VoxelNet(Energy):
    """E(x, y) = head(features(x))[y] (or the one output) + ‖x‖²/(2σ²)."""

    def __init__(self, trunk: nn.Module, head: nn.Module, reference_std: float | None,
                 condition: Condition = Condition.NONE):
        super().__init__()
        self.trunk, self.head, self.reference_std, self.condition = trunk, head, reference_std, condition

    @classmethod
    def from_config(cls, c: VoxelNetConfig, ctx) -> VoxelNet:
        who = "energy 'voxelnet'"
        shape = ctx.need_event_shape(who)
        if len(shape) != 4:
            raise ValueError(f"{who} needs voxel grids (channels, depth, height, width), the data are {shape}")
        condition = Condition(c.condition)
        outputs = 1
        if condition is Condition.LABEL:
            if not ctx.num_classes:
                raise ValueError(f"{who} with condition = 'label' needs data with classes (num_classes)")
            outputs = ctx.num_classes
        layers: list[nn.Module] = []
        for (a, b), k, s in zip(pairwise((shape[0], *c.channels)), c.kernels, c.strides, strict=True):
            # padding (k − s)/2 rounded up: a stride-s layer divides the size by s exactly
            layers += [nn.Conv3d(a, b, k, stride=s, padding=max(0, (k - s + 1) // 2)), ACTIVATIONS[c.activation]()]
        trunk = nn.Sequential(*layers)
        with torch.no_grad():
            top = trunk(torch.zeros(1, *shape))
        if top.numel() == 0:
            raise ValueError(f"{who}: the layers shrink {tuple(shape)} to nothing; use fewer or smaller strides")
        return cls(trunk, nn.Linear(top.numel(), outputs), c.reference_std, condition)

    def features(self, x: Tensor) -> Tensor:
        """The flattened top layer (N, D): the representation the head reads out."""
        return self.trunk(x).flatten(1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        out = self.head(self.features(x))
        e = label_energy(out, cond) if self.condition is Condition.LABEL else out[:, 0]
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e
