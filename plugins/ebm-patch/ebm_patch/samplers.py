"""Coarse-to-fine synthesis through a PatchGenCN pyramid, at any image size.

The pyramid's sizes follow the size of the starting images ``x0``: at the coarsest scale
the chains start from ``x0`` subsampled (nearest, so uniform noise stays uniform noise),
at each finer scale from the coarser scale's samples upsampled (bilinear); at every scale
a kernel built through the registry (Langevin by default) runs under that scale's energy.
With a ``mask`` (true: observed) the observed pixels at each scale are the observed image
resized, held fixed where the whole of a coarse pixel is observed (inpainting); at the
finest scale they come out bit for bit.

The multi-scale samplers of ebm-multiscale pool square images to fixed resolutions of
their own energy; this one needs sizes that follow the target's (any aspect ratio), so it
is written here for the patch pyramid.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm_patch.energies import PatchPyramid, resize
from ebmcore import config as cfg
from ebmcore.kit.pyramid import KernelPyramid


@attrs.frozen
class PatchPyramidSamplerConfig:
    """Coarse-to-fine synthesis through a patch pyramid (PatchGenCN) at the size of the starts."""

    n_steps: int = cfg.positive("kernel steps per scale", default=30)
    step_size: float = cfg.positive("step size of the per-scale kernel", default=0.01)
    noise: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
                                      metadata={"doc": "noise of the per-scale kernel (None: its default)"})
    kernel: str = cfg.doc("registered sampler run at each scale", default="langevin")
    kernel_options: dict[str, Any] = attrs.field(
        factory=dict, metadata={"doc": "the kernel's other settings (keys of its own section)"})
    compile: bool = cfg.compile_flag()


def _observed_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Where a pixel at ``size`` is wholly observed (its resized mask is 1)."""
    return resize(mask.float(), size) > 0.999


class PatchPyramidSampler(KernelPyramid):
    """Runs ``kernel`` at each scale of a :class:`PatchPyramid`, coarse to fine."""

    Config = PatchPyramidSamplerConfig

    def run_pyramid(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *,
                    rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None) -> list[Tensor]:
        """Samples at every scale, coarse to fine (detached), the finest of ``x0``'s size."""
        if not isinstance(energy, PatchPyramid):
            raise TypeError(f"sampler 'patch_pyramid' needs a patch pyramid (energy 'patchgencn'), "
                            f"got {type(energy).__name__}")
        steps = self.n_steps if n_steps is None else n_steps
        sizes = energy.sizes(*x0.shape[-2:])
        x = F.interpolate(x0, size=sizes[0], mode="nearest-exact")
        out = []
        for s, (net, size) in enumerate(zip(energy.nets, sizes, strict=True)):
            if s:
                x = resize(x, size)
            m = None
            if mask is not None:
                m = mask.expand_as(x0) if s == len(sizes) - 1 else _observed_mask(mask.expand_as(x0), size)
                x = torch.where(m, resize(x0, size), x)
            x = self.kernel.run(x, net, steps, rng=rng, cond=cond, mask=m)
            out.append(x)
        return out


__all__ = ["PatchPyramidSampler", "PatchPyramidSamplerConfig"]
