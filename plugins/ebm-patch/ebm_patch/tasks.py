"""Tasks with a trained patch pyramid, on the photo of the data:

- ``patch_synthesis``: new images at other sizes and aspect ratios (random generation at a
  larger size, retargeting), from uniform noise in (−1, 1) as PatchGenCN starts, each size
  scored by the patch distance beside its yardsticks (the same crops, so one set of
  yardsticks serves every size) and drawn as ``synthesis_<H>x<W>.png`` (the photo first);
- ``patch_inpaint``: the photo with a centred square missing, filled by the pyramid
  sampler with the observed pixels held fixed (kept bit for bit); the MSE on the hole
  beside filling it with the observed pixels' mean and with noise, and
  ``inpaint.png`` (photo, observed with the hole grey, fills).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
import torch.nn.functional as F

from ebm_patch.data import PhotoData
from ebm_patch.energies import PatchPyramid
from ebm_patch.metrics import crop_side
from ebm_patch.samplers import PatchPyramidSampler
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.pictures import image_grid_png


def _factors(_inst, _attr, value):
    if not value or any(len(v) != 2 or min(v) <= 0 for v in value):
        raise ValueError(f"must be [height, width] factors > 0, got {[list(v) for v in value]}")


def _needs(ctx, who: str) -> tuple[PatchPyramid, PatchPyramidSampler]:
    energy, sampler = ctx.require("energy", who), ctx.require("sampler", who)
    if not isinstance(energy, PatchPyramid) or not isinstance(sampler, PatchPyramidSampler):
        raise EbmError(f"{who} needs energy 'patchgencn' and sampler 'patch_pyramid'")
    return energy, sampler


def _photo(data, who: str) -> PhotoData:
    if not isinstance(data, PhotoData):
        raise EbmError(f"{who} needs data 'photo'")
    return data


@attrs.frozen
class PatchSynthesisConfig:
    """New images of other sizes and aspect ratios from a patch pyramid, scored by the patch distance."""

    sizes: tuple[tuple[float, float], ...] = attrs.field(
        default=((1.0, 1.0), (1.5, 1.5), (1.0, 2.0)), validator=_factors,
        metadata={"doc": "[height, width] of each synthesis as factors of the photo's"})
    n: int = cfg.positive("images per size", default=8)


class PatchSynthesis(Task):
    def __init__(self, c: PatchSynthesisConfig, energy: PatchPyramid, sampler: PatchPyramidSampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: PatchSynthesisConfig, ctx) -> PatchSynthesis:
        who = "task 'patch_synthesis'"
        h, w = ctx.need_event_shape(who)[-2:]
        crop = crop_side(h, w)
        for fh, fw in c.sizes:  # refused now, not after training
            if min(round(h * fh), round(w * fw)) < crop:
                raise EbmError(f"$.tasks: {who}: size [{fh}, {fw}] makes {round(h * fh)}×{round(w * fw)} images, "
                               f"smaller than the patch distance's {crop}×{crop} crop of the {h}×{w} photo")
        return cls(c, *_needs(ctx, who), ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        photo = _photo(data, "task 'patch_synthesis'").photo
        metrics = {}
        for fh, fw in self.c.sizes:
            h, w = round(photo.shape[-2] * fh), round(photo.shape[-1] * fw)
            x0 = torch.rand((self.c.n, photo.shape[0], h, w), generator=rng, device=rng.device) * 2 - 1
            x = self.sampler.run(x0.to(self.device), self.energy, rng=rng).cpu()
            metrics.update(data.metrics(x, suffix=f"@{h}x{w}"))
            shown = torch.zeros((1, *x.shape[1:]))  # the photo in the first tile, on grey
            shown[0, :, :min(h, photo.shape[-2]), :min(w, photo.shape[-1])] = photo[:, :h, :w]
            image_grid_png(torch.cat([shown, x]), out / f"synthesis_{h}x{w}.png", columns=3)
        return metrics


@attrs.frozen
class PatchInpaintConfig:
    """The photo with a centred square missing, filled by the patch pyramid (observed pixels kept)."""

    hole: float = attrs.field(default=0.25, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                              metadata={"doc": "side of the missing square, as a share of the photo's shorter side"})
    n: int = cfg.positive("fills drawn", default=4)


def centre_hole(shape: tuple[int, ...], hole: float) -> torch.Tensor:
    """Boolean ``shape`` ``(N, C, H, W)``: true on the centred missing square."""
    h, w = shape[-2:]
    side = max(1, round(hole * min(h, w)))
    missing = torch.zeros(shape, dtype=torch.bool)
    top, left = (h - side) // 2, (w - side) // 2
    missing[..., top:top + side, left:left + side] = True
    return missing


class PatchInpaint(Task):
    def __init__(self, c: PatchInpaintConfig, energy: PatchPyramid, sampler: PatchPyramidSampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: PatchInpaintConfig, ctx) -> PatchInpaint:
        return cls(c, *_needs(ctx, "task 'patch_inpaint'"), ctx.device)

    def inpaint(self, photo: torch.Tensor, missing: torch.Tensor, *, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, filled): ``missing`` of the photos replaced by uniform noise, and after the
        pyramid; the observed pixels of both are the photo's, bit for bit."""
        noise = torch.rand(photo.shape, generator=rng, device=rng.device).cpu() * 2 - 1
        start = torch.where(missing, noise, photo)
        done = self.sampler.run(start.to(self.device), self.energy, rng=rng, mask=~missing.to(self.device))
        return start, torch.where(missing, done.cpu(), photo)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        photo = _photo(data, "task 'patch_inpaint'").photo
        x = photo.expand(self.c.n, *photo.shape)
        missing = centre_hole(tuple(x.shape), self.c.hole)
        start, filled = self.inpaint(x, missing, rng=rng)
        mean = torch.where(missing, x[~missing].mean(), x)
        observed = torch.where(missing, torch.zeros_like(x), x)
        image_grid_png(torch.cat([x[:1], observed[:1], filled]), out / "inpaint.png", columns=self.c.n + 2)

        def mse(a):
            return float(F.mse_loss(a[missing], x[missing]))

        return {"mse": mse(filled), "mse_mean_fill": mse(mean), "mse_noise_fill": mse(start)}


__all__ = ["PatchInpaint", "PatchInpaintConfig", "PatchSynthesis", "PatchSynthesisConfig", "centre_hole"]
