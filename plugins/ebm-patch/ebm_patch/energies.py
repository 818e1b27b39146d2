"""PatchGenCN's energy: a pyramid of patch energies, one small fully convolutional net per scale.

Scale s (0 the coarsest, S − 1 the photo's own size) sees images ``factor^(S−1−s)`` times
the size being synthesised. Each net is ``layers`` 3×3 convolutions without downsampling,
so each output depends on one (2·layers + 1)² patch; the energy is the sum of the outputs
over positions — a sum of patch energies, the same function at any image size, which is
what lets a model of one photo synthesise images of other sizes and aspect ratios. The
input is reflect-padded by the receptive field's radius first: border pixels are then in
as many patches as inner ones (with zero padding or none, the Langevin noise would
dominate them), and inner patches are untouched by the padding.
"""

from __future__ import annotations

import itertools

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from ebmcore import EbmError, Energy
from ebmcore import config as cfg


@attrs.frozen
class PatchGenCNConfig:
    """PatchGenCN (Zheng, Xie & Li 2021): a pyramid of fully convolutional patch energies."""

    scales: int = cfg.positive("number of scales S of the pyramid", default=5)
    factor: float = attrs.field(default=0.75, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                                metadata={"doc": "size ratio between consecutive scales, in (0, 1)"})
    width: int = cfg.positive("channels of each net's hidden layers", default=32)
    layers: int = attrs.field(default=5, validator=attrs.validators.ge(2),
                              metadata={"doc": "3×3 convolutions per net (≥ 2): patches of 2·layers + 1 pixels"})


class PatchNet(Energy):
    """One scale's energy: the sum over positions of a fully convolutional net's output."""

    def __init__(self, channels: int, width: int = 32, layers: int = 5):
        super().__init__()
        sizes = [channels] + [width] * (layers - 1)
        body: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            body += [nn.Conv2d(a, b, 3), nn.SiLU()]
        self.net = nn.Sequential(*body, nn.Conv2d(width, 1, 3))
        self.radius = layers

    def patch_energies(self, x: Tensor) -> Tensor:
        """``(B, H, W)``: the energy of the patch centred at each pixel."""
        return self.net(F.pad(x, (self.radius,) * 4, mode="reflect"))[:, 0]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.patch_energies(x).sum((1, 2))


class PatchPyramid(Energy):
    """``nets[s]`` is the energy at scale s (each an :class:`Energy`); the pyramid's own energy
    is the finest scale's, so a one-scale sampler or task works at full size too."""

    def __init__(self, channels: int, scales: int = 5, factor: float = 0.75, width: int = 32, layers: int = 5):
        super().__init__()
        self.factor, self.radius = factor, layers
        self.nets = nn.ModuleList(PatchNet(channels, width, layers) for _ in range(scales))

    @classmethod
    def from_config(cls, c: PatchGenCNConfig, ctx) -> PatchPyramid:
        shape = ctx.need_event_shape("energy 'patchgencn'")
        if len(shape) != 3:
            raise EbmError(f"energy 'patchgencn' needs images (channels, height, width), the data are {shape}")
        energy = cls(shape[0], c.scales, c.factor, c.width, c.layers)
        energy.sizes(*shape[1:])  # a pyramid too deep for the photo is refused now, not mid-run
        return energy

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The image size at each scale, coarse to fine, for images of ``height × width``."""
        out = [(round(height * self.factor**k), round(width * self.factor**k)) for k in range(len(self.nets))][::-1]
        if min(out[0]) <= self.radius:
            raise EbmError(f"energy 'patchgencn': {height}×{width} images are {out[0][0]}×{out[0][1]} at the "
                           f"coarsest scale, too small for patches of {2 * self.radius + 1} (use fewer scales "
                           "or a larger factor)")
        return out

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.nets[-1](x)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resizing (antialiased when shrinking): the photo and the samples between scales."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < x.shape[-2] or size[1] < x.shape[-1])


__all__ = ["PatchGenCNConfig", "PatchNet", "PatchPyramid", "resize"]
