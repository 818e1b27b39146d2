"""A pyramid of energies, one per resolution, chosen by the size of the input."""

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmcore import Energy
from ebmcore import config as cfg


def _resolutions(_inst, _attr, value):
    if not value or any(r < 1 for r in value) or list(value) != sorted(set(value)):
        raise ValueError(f"must be increasing positive sizes, got {list(value)}")
    if any(b % a for a, b in zip(value, value[1:], strict=False)):
        raise ValueError(f"each size must divide the next (pooling is exact), got {list(value)}")


@attrs.frozen
class MultiScaleEnergyConfig:
    """A ConvNet energy per resolution (multigrid / coarse-to-fine models)."""

    resolutions: tuple[int, ...] = attrs.field(default=(1, 4, 16), validator=_resolutions,
                                               metadata={"doc": "image sizes of the pyramid, coarse to fine"})
    width: int = cfg.positive("channels of each ConvNet", default=32)
    head: Literal["linear", "sum"] = cfg.doc(
        "'linear': stride-2 convolutions down to 2×2, then a linear layer (Gao et al.); 'sum': stride-2 "
        "convolutions down to 8×8 (one 3×3 convolution at 8×8 and below), then a 1×1 convolution to one "
        "channel summed over positions (a stationary energy, for textures: Xie et al. 2016)",
        default="linear")
    reference_std: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "add ‖x‖²/(2σ²) at every scale (Xie et al. 2016)"})


class ScaleEnergy(nn.Module):
    """E_r for r×r images.

    ``head = "linear"``: stride-2 conv layers while the map is larger than 2×2, then a linear
    layer. ``head = "sum"``: stride-2 conv layers while the map is larger than 8×8 (a single
    stride-1 3×3 conv for grids of 8×8 and less), then a 1×1 conv to one channel summed over
    positions: translation-equivariant features and a sum of local potentials, the same at
    every position (textures).
    """

    def __init__(self, channels: int, resolution: int, width: int = 32, head: str = "linear"):
        super().__init__()
        layers: list[nn.Module] = []
        c, r = channels, resolution
        while r > (8 if head == "sum" else 2):
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.SiLU()]
            c, r = width, (r + 1) // 2
        if head == "sum" and not layers:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.SiLU()]
            c = width
        self.features = nn.Sequential(*layers)
        self.sum = head == "sum"
        self.head = nn.Conv2d(c, 1, 1) if self.sum else nn.Linear(c * r * r, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.sum:
            return self.head(self.features(x)).sum(dim=(1, 2, 3))
        return self.head(self.features(x).flatten(1)).squeeze(-1)


class PyramidEnergy(Energy):
    """An energy of square images at each of ``resolutions`` (increasing sizes, each dividing
    the next), chosen by the input's size: what the pyramid samplers and objective need."""

    resolutions: tuple[int, ...]


class MultiScaleEnergy(PyramidEnergy):
    """``energies[str(r)]`` is the energy of r×r images; ``forward`` picks it by x's size."""

    def __init__(self, channels: int, resolutions=(1, 4, 16), width: int = 32,
                 reference_std: float | None = None, head: str = "linear"):
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.energies = nn.ModuleDict({str(r): ScaleEnergy(channels, r, width, head) for r in self.resolutions})
        self.reference_std = reference_std

    @classmethod
    def from_config(cls, c: MultiScaleEnergyConfig, ctx) -> "MultiScaleEnergy":
        shape = ctx.need_event_shape("energy 'multiscale'")
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] != c.resolutions[-1]:
            raise ValueError(f"energy 'multiscale' needs square images of size {c.resolutions[-1]} (the finest "
                             f"resolution), the data are {shape}")
        return cls(shape[0], c.resolutions, c.width, c.reference_std, c.head)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        e = self.energies[str(x.shape[-1])](x)
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e


def resize(x: Tensor, size: int) -> Tensor:
    """Average-pool down or nearest-upsample to size×size."""
    if x.shape[-1] > size:
        return F.adaptive_avg_pool2d(x, size)
    if x.shape[-1] < size:
        return F.interpolate(x, size=size, mode="nearest")
    return x


class Faded(nn.Module):
    """α·E_r(x) + (1 − α)·E_{r/2}(pool(x)): the fade-in between two stages (CF-EBM)."""

    def __init__(self, energy: MultiScaleEnergy, coarse: int, alpha: float):
        super().__init__()
        # a tensor, so that a compiled kernel takes α as an input instead of compiling once per α
        self.energy, self.coarse, self.alpha = energy, coarse, torch.tensor(alpha)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.alpha * self.energy(x) + (1 - self.alpha) * self.energy(resize(x, self.coarse))


def check_pyramid(energy: nn.Module, who: str) -> tuple[int, ...]:
    """The resolutions of a multi-scale energy, or a clear error."""
    if not isinstance(energy, PyramidEnergy):
        raise TypeError(f"{who} needs a multi-scale energy (energy 'multiscale'), got {type(energy).__name__}")
    return energy.resolutions


__all__ = ["Faded", "MultiScaleEnergy", "PyramidEnergy", "MultiScaleEnergyConfig", "ScaleEnergy", "check_pyramid", "resize"]
