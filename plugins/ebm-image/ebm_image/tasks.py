"""Post-training tasks on images: inpainting, denoising, out-of-distribution detection.

Each is a component of kind ``task`` (``[tasks.<label>] type = "inpaint"``), run by the
runner after the final evaluation and by ``ebm eval RUN_DIR``. They work on the data's
held-out split (``ImageData.heldout()``), never on training images, and take the energy
(and the recipe's sampler) from the build context.

- ``inpaint``: a region of each image is replaced by noise and completed by the recipe's
  sampler with the observed pixels masked (kept bit for bit). Yardsticks: the training
  set's mean image in the hole, and the noise the chains start from.
- ``denoise``: Gaussian noise is added, then the recipe's sampler runs a few steps from the
  noisy image (no mask, no data term: the energy alone pulls the image back towards the
  data). Yardsticks: the noisy image itself and a 3×3 Gaussian blur of it.
- ``ood``: the AUROC of the energy (lower = more in-distribution) separating held-out
  images from digits, uniform noise, vertically flipped and noised held-out images.
"""

from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ebm_image.common import ImageData
from ebm_image.digits import DigitsData, load_digits_tensor
from ebmcore import Condition, EbmError, Task, sampling_mode
from ebmcore import config as cfg
from ebmcore.errors import did_you_mean
from ebmcore.kit.diagnostics import auroc
from ebmcore.kit.masks import check_completes, completion_condition, hole_mask
from ebmcore.kit.pictures import image_grid_png
from ebmcore.kit.replicas import one_row_per_chain

#: OOD sets, in report order
OOD_SETS = ("digits", "noise", "flip", "gaussian", "train")


def _image_shape(ctx, who: str) -> tuple[int, int, int]:
    shape = ctx.need_event_shape(who)
    if len(shape) != 3:
        raise EbmError(f"{who} needs images (C, H, W), the data's event shape is {tuple(shape)}")
    return tuple(shape)


def _heldout(data, who: str, n: int) -> Tensor:
    """The first ``n`` held-out images (all of them if fewer)."""
    held = data.heldout()
    if held is None:
        raise EbmError(f"{who} needs data with a held-out split (data.heldout())")
    x = held.x
    if len(x) == 0:
        raise EbmError(f"{who}: the held-out split is empty")
    return x[:n]


def _energies(energy, x: Tensor, device, batch: int, cond: Tensor | None = None) -> Tensor:
    """E(x) (or E(x, cond)) in chunks, without gradients, in eval mode; on the CPU."""
    out = []
    conds = [None] * len(x.split(batch)) if cond is None else cond.split(batch)
    with sampling_mode(energy), torch.no_grad():
        for chunk, c in zip(x.split(batch), conds):
            e = energy(chunk.to(device)) if c is None else energy(chunk.to(device), c.to(device))
            out.append(e.float().cpu())
    return torch.cat(out)


def _noise(shape, kind: str, rng: torch.Generator) -> Tensor:
    if kind == "uniform":
        return torch.rand(shape, generator=rng, device=rng.device).cpu() * 2 - 1
    return torch.randn(shape, generator=rng, device=rng.device).cpu().clamp(-1, 1)


def _mse(a: Tensor, b: Tensor, where: Tensor | None = None) -> Tensor:
    """Per-image mean squared error, over ``where`` (bool, like a) or every pixel."""
    sq = (a - b).pow(2)
    if where is None:
        return sq.flatten(1).mean(1)
    w = where.float()
    return (sq * w).flatten(1).sum(1) / w.flatten(1).sum(1)


def _rows(path: Path, rows: list[Tensor], show: int) -> None:
    """A picture with one row per tensor (the first ``show`` images of each)."""
    show = min(show, len(rows[0]), 64 // len(rows))
    image_grid_png(torch.cat([r[:show] for r in rows]), path, columns=show)


# -- inpaint ---------------------------------------------------------------------------------

@attrs.frozen
class InpaintConfig:
    """Inpainting of held-out images by the recipe's sampler with the observed pixels masked."""

    n: int = cfg.positive("held-out images to complete (the first n)", default=256)
    hole: int = cfg.positive("side of the missing square, in pixels ('bottom': rows)", default=12)
    region: Literal["centre", "random", "bottom"] = cfg.doc(
        "where the hole is: the centre, a random place per image, or the bottom `hole` rows",
        default="centre")
    fill: Literal["uniform", "gaussian", "mean"] = cfg.doc(
        "what the hole starts from: U(−1, 1) or N(0, 1) clamped to [−1, 1] noise, or the training "
        "set's mean image", default="uniform")
    n_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "sampler steps (default: the recipe sampler's n_steps)"})
    chains: int = cfg.positive("independent completions per image, averaged: their mean estimates "
                               "the conditional mean, which minimises the expected MSE", default=1)
    batch: int = cfg.positive("images per chain batch", default=256)
    show: int = cfg.positive("images in the picture (rows: original, masked, completed, mean fill)",
                             default=8)
    by: Literal["sampler", "objective"] = cfg.doc(
        "'sampler': the recipe's sampler on the energy with the observed pixels masked, from `fill`; "
        "'objective': the objective's own completion model (e.g. ebm-coop's cooperative completion: "
        "a generator proposes, Langevin revises; `fill` is then unused)", default="sampler")


class Inpaint(Task):
    """Complete a region of held-out images; MSE on the region against two yardsticks."""

    def __init__(self, c: InpaintConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: InpaintConfig, ctx) -> "Inpaint":
        who = "task 'inpaint'"
        _, h, w = _image_shape(ctx, who)
        limit = h if c.region == "bottom" else min(h, w)
        if c.hole >= limit:
            raise EbmError(f"{who}: hole = {c.hole} leaves nothing observed in {h}×{w} images")
        if c.by == "objective":
            check_completes(ctx, who)
        return cls(c, ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.device)

    def complete(self, x: Tensor, missing: Tensor, *, rng: torch.Generator,
                 mean_image: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(start, completed): the images with the hole filled (noise, or ``mean_image`` for
        fill = "mean"), and after sampling. Observed pixels of ``completed`` are those of
        ``x``, bit for bit."""
        if self.c.fill == "mean":
            if mean_image is None:
                raise ValueError("fill = 'mean' needs the mean image")
            start = torch.where(missing, mean_image.expand_as(x), x)
        else:
            start = torch.where(missing, _noise(x.shape, self.c.fill, rng), x)
        out = []
        for xs, ms in zip(start.split(self.c.batch), missing.split(self.c.batch)):
            xs, ms = xs.to(self.device), ms.to(self.device)
            out.append(self.sampler.run(xs, self.energy, self.c.n_steps, rng=rng, mask=~ms).cpu())
        return start, torch.cat(out)

    def complete_by_objective(self, objective, x: Tensor, missing: Tensor, *, rng: torch.Generator) -> Tensor:
        """The objective's completions (``objective.complete``), observed pixels kept bit for bit."""
        out = []
        for xs, ms in zip(x.split(self.c.batch), missing.split(self.c.batch)):
            done = objective.complete(xs.to(self.device), ms.to(self.device), rng=rng, n_steps=self.c.n_steps)
            out.append(torch.where(ms, done.cpu(), xs))
        return torch.cat(out)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = _heldout(data, "task 'inpaint'", self.c.n)
        missing = hole_mask(tuple(x.shape), self.c.hole, self.c.region, rng)
        mean_image = data.dataset().x.mean(0, keepdim=True)
        mean_fill = torch.where(missing, mean_image.expand_as(x), x)

        def once() -> tuple[Tensor, Tensor]:
            if self.c.by == "objective":
                return mean_fill, self.complete_by_objective(objective, x, missing, rng=rng)
            return self.complete(x, missing, rng=rng, mean_image=mean_image)

        start, completed = once()
        extra = {}
        if self.c.chains > 1:
            extra["mse_one_chain"] = _mse(completed, x, missing).mean().item()
            more = [once()[1] for _ in range(self.c.chains - 1)]
            completed = torch.where(missing, torch.stack([completed, *more]).mean(0), x)
        mse = _mse(completed, x, missing)
        if self.c.by == "sampler" and self.c.fill != "mean":
            noise_fill = start
        else:
            noise_fill = torch.where(missing, _noise(x.shape, "uniform", rng), x)
        mse_mean = _mse(mean_fill, x, missing)
        # a completion energy scores x given its observed part
        cond = completion_condition(x, missing) if self.energy.condition is Condition.COMPLETION else None
        e_orig = _energies(self.energy, x, self.device, self.c.batch, cond)
        e_done = _energies(self.energy, completed, self.device, self.c.batch, cond)
        masked = torch.where(missing, torch.zeros_like(x), x)  # the hole shown in grey
        _rows(out / "inpaint.png", [x, masked, completed, mean_fill], self.c.show)
        return {
            "mse": mse.mean().item(),
            "mse_mean_fill": mse_mean.mean().item(),
            "mse_noise_fill": _mse(noise_fill, x, missing).mean().item(),
            "win_rate_vs_mean_fill": (mse < mse_mean).float().mean().item(),
            "energy_original": e_orig.mean().item(),
            "energy_completed": e_done.mean().item(),
            **extra,
        }


# -- denoise ---------------------------------------------------------------------------------

@attrs.frozen
class DenoiseConfig:
    """Denoising held-out images by a few steps of the recipe's sampler from the noisy image."""

    n: int = cfg.positive("held-out images (the first n)", default=256)
    sigma: float = cfg.positive("std of the Gaussian noise added (images are in [−1, 1])", default=0.3)
    n_steps: int = cfg.positive("sampler steps from the noisy image", default=10)
    batch: int = cfg.positive("images per chain batch", default=256)
    show: int = cfg.positive("images in the picture (rows: original, noisy, denoised)", default=8)


class Denoise(Task):
    """Noisy held-out images → the recipe's sampler for ``n_steps`` (no mask, no data term),
    clamped to [−1, 1]; MSE before and after, and of a 3×3 Gaussian blur as a yardstick."""

    def __init__(self, c: DenoiseConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: DenoiseConfig, ctx) -> "Denoise":
        who = "task 'denoise'"
        _image_shape(ctx, who)
        return cls(c, ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = _heldout(data, "task 'denoise'", self.c.n)
        noisy = x + self.c.sigma * torch.randn(x.shape, generator=rng, device=rng.device).cpu()
        out_x = [self.sampler.run(chunk.to(self.device), self.energy, self.c.n_steps, rng=rng).cpu()
                 for chunk in noisy.split(self.c.batch)]
        denoised = torch.cat(out_x).clamp(-1, 1)
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16).expand(x.shape[1], 1, 3, 3)
        blurred = F.conv2d(F.pad(noisy, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
        _rows(out / "denoise.png", [x, noisy, denoised], self.c.show)
        return {
            "mse_noisy": _mse(noisy, x).mean().item(),
            "mse_noisy_clamped": _mse(noisy.clamp(-1, 1), x).mean().item(),
            "mse": _mse(denoised, x).mean().item(),
            "mse_blur": _mse(blurred.clamp(-1, 1), x).mean().item(),
        }


# -- ood ---------------------------------------------------------------------------------------

def _sets(_inst, _attr, value):
    if value is None:
        return
    unknown = [v for v in value if v not in OOD_SETS]
    if unknown or not value or len(set(value)) != len(value):
        hint = did_you_mean(unknown[0], OOD_SETS) if unknown else ""
        raise ValueError(f"must be distinct names from {', '.join(OOD_SETS)}, got {list(value)}{hint}")


@attrs.frozen
class OODConfig:
    """AUROC of the energy separating held-out images from out-of-distribution ones."""

    n: int = cfg.positive("held-out images, and images of each other set", default=1000)
    sets: tuple[str, ...] | None = attrs.field(
        default=None, validator=_sets,
        metadata={"doc": "sets to score: digits (scikit-learn's, resized), noise (U(−1, 1)), flip "
                         "(held-out flipped upside down), gaussian (held-out + N(0, σ²)), train "
                         "(training images: 0.5 = no memorisation). Default: all but train, "
                         "digits only for 1-channel data that are not digits"})
    sigma: float = cfg.positive("noise std of the 'gaussian' set", default=0.3)
    batch: int = cfg.positive("images per energy evaluation", default=500)
    show: int = cfg.positive("images of each set in the picture", default=8)


class OOD(Task):
    """Energies of held-out images against each other set; ``auroc/<set>`` (1: every
    out-of-distribution image has a higher energy than every held-out one; 0.5: chance)."""

    def __init__(self, c: OODConfig, energy, device, sets: tuple[str, ...]):
        self.c, self.energy, self.device, self.sets = c, energy, torch.device(device), sets

    @classmethod
    def from_config(cls, c: OODConfig, ctx) -> "OOD":
        who = "task 'ood'"
        channels, _, _ = _image_shape(ctx, who)
        if c.sets is not None:
            sets = c.sets
        else:
            is_digits = isinstance(ctx.built.get("data"), DigitsData)
            sets = tuple(s for s in OOD_SETS if s != "train" and not (s == "digits" and (channels != 1 or is_digits)))
        return cls(c, ctx.require("energy", who), ctx.device, sets)

    def make_set(self, name: str, x: Tensor, data, rng: torch.Generator) -> Tensor:
        n, (c, h, w) = len(x), x.shape[1:]
        if name == "digits":
            digits, _ = load_digits_tensor()
            idx = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
            digits = digits[idx][:n]
            size = (h, w)
            digits = F.interpolate(digits, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
            return digits.expand(-1, c, -1, -1).contiguous()
        if name == "noise":
            return torch.rand(x.shape, generator=rng, device=rng.device).cpu() * 2 - 1
        if name == "flip":
            return x.flip(-2)
        if name == "gaussian":
            return (x + self.c.sigma * torch.randn(x.shape, generator=rng, device=rng.device).cpu()).clamp(-1, 1)
        if name == "train":
            return data.dataset().x[:n]
        raise AssertionError(name)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = _heldout(data, "task 'ood'", self.c.n)
        e_in = _energies(self.energy, x, self.device, self.c.batch)
        metrics: dict[str, float] = {"energy/heldout": e_in.mean().item()}
        shown = [x]
        for name in self.sets:
            other = self.make_set(name, x, data, rng)
            e_out = _energies(self.energy, other, self.device, self.c.batch)
            if not (torch.isfinite(e_in).all() and torch.isfinite(e_out).all()):
                raise EbmError(f"task 'ood': non-finite energies on the {name!r} set or the held-out images")
            metrics[f"auroc/{name}"] = auroc(e_in, e_out)
            metrics[f"energy/{name}"] = e_out.mean().item()
            shown.append(other)
        _rows(out / "ood.png", shown, self.c.show)
        return metrics


# -- class accuracy -----------------------------------------------------------------------

@attrs.frozen
class ClassAccuracyConfig:
    """Label-conditional samples scored by the data set's classifier: is each drawn as its label?"""

    n: int = cfg.positive("samples, every class equally often (labels 0, 1, …, K−1, 0, …)", default=1000)
    batch: int = cfg.positive("samples drawn per call", default=250)
    show: int = cfg.positive("samples of each class in the picture (one row per class)", default=10)


class ClassAccuracy(Task):
    """``accuracy``: the share of samples drawn for label y that the classifier calls y;
    ``accuracy/min_class``: the worst class; ``accuracy/class<y>``: each class."""

    def __init__(self, c: ClassAccuracyConfig, device):
        self.c, self.device = c, torch.device(device)

    @classmethod
    def from_config(cls, c: ClassAccuracyConfig, ctx) -> "ClassAccuracy":
        who = "task 'class_accuracy'"
        data = ctx.require("data", who)
        if not isinstance(data, ImageData) or not data.conditional:
            raise EbmError(f"{who} needs labelled image data with conditional = true (a label-conditional model)")
        return cls(c, ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        k = data.num_classes
        labels = torch.arange(self.c.n) % k
        samples = torch.cat([objective.sample(len(y), rng=rng, cond=y.to(self.device)).cpu()
                             for y in labels.split(self.c.batch)])
        _, pred = data.classifier().embed(samples.float().clamp(-1, 1))
        right = (pred == labels).float()
        per_class = [right[labels == y].mean().item() for y in range(k)]
        rows = [samples[labels == y][: self.c.show] for y in range(k)]
        shown = torch.cat(rows)
        image_grid_png(shown, out / "classes.png", columns=min(self.c.show, len(rows[0])), limit=len(shown))
        return {"accuracy": right.mean().item(), "accuracy/min_class": min(per_class),
                **{f"accuracy/class{y}": a for y, a in enumerate(per_class)}}


__all__ = [
    "OOD",
    "OOD_SETS",
    "ClassAccuracy",
    "ClassAccuracyConfig",
    "Denoise",
    "DenoiseConfig",
    "Inpaint",
    "InpaintConfig",
    "OODConfig",
]
