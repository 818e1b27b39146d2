"""A patch-distribution distance to one photo, and the yardsticks it stands beside.

``patch_terms(x, photo)``: at three scales (the images average-pooled by 1, 2 and 4),
every 5×5 patch of x is matched to its nearest patch of the photo (coherence: x has only
patches of the photo) and every patch of the photo to its nearest patch of x
(completeness: x has all of them); each is the mean squared difference per pixel of
those pairs, averaged over the three scales. ``patch_distance`` is their mean (Simakov
et al.'s bidirectional similarity); both are 0 for the photo itself.

Images of different sizes are scored alike: each is cut to one square crop (a side of
¾ of the photo's shorter side, at a position drawn per image from a fixed seed), so a
larger sample or a retargeted one is measured exactly as the photo's own crops are.
``patch`` is the mean over the images, ``patch_coherence`` the mean of its coherence half
alone. A fixed crop of a larger image holds a smaller share of its scene, which the
completeness half counts against it; coherence (are the patches the photo's?) does not
depend on the size (but is lenient with bland regions): report both. Beside each, from as
many images, cropped the same way:

- ``patch/crops``: crops of the photo itself: the floor (a crop misses the photo's other
  patches; its coherence is 0 at offsets that are multiples of 4, small at others, where
  the pooled grids of the crop and the photo differ);
- ``patch/shuffled``: the photo cut into blocks (⅛ of its shorter side) put back in a random
  order: right patches, wrong arrangement;
- ``patch/gaussian``: random-phase images, the stationary Gaussian field with the photo's
  power spectrum (its Fourier magnitudes with uniformly random phases): the simplest
  fitted model of a single image; ``patch/vs_gaussian`` is the score over it;
- ``patch/noise``: uniform noise on [−1, 1] (the ceiling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ebmcore.kit.metrics import beside

POOLS = (1, 2, 4)
PATCH = 5
#: the most patches of one image matched, to bound the cost of large photos (a stride thins them)
MAX_PATCHES = 8192
#: the most images scored at once (samples beyond are left out, the yardsticks use as many)
MAX_IMAGES = 16
SCORES = ("patch", "patch_coherence")


def crop_side(height: int, width: int) -> int:
    """The side of the metric's square crop for a photo of ``height × width``: ¾ of the
    shorter side, at least 4 patches (the coarsest pooling must hold one)."""
    return max(4 * PATCH, 3 * min(height, width) // 4)


def patches(x: Tensor, size: int = PATCH) -> Tensor:
    """All ``size``×``size`` patches of the image ``x`` ``(C, H, W)`` as rows ``(L, C·size²)``,
    thinned by a stride when there are more than :data:`MAX_PATCHES`."""
    h, w = x.shape[-2:]
    stride = max(1, math.ceil(math.sqrt((h - size + 1) * (w - size + 1) / MAX_PATCHES)))
    return rearrange(F.unfold(x[None], size, stride=stride), "1 d l -> l d")


def _nearest(a: Tensor, b: Tensor) -> Tensor:
    """For each row of a, the squared distance to its nearest row of b (in chunks of a)."""
    return torch.cat([torch.cdist(chunk, b).amin(1).pow(2) for chunk in a.split(2048)])


def patch_terms(x: Tensor, photo: Tensor) -> tuple[float, float]:
    """(coherence, completeness) of the image ``x`` ``(C, H, W)`` against ``photo``
    ``(C, H', W')``, averaged over the pooling scales (both at least 4·5 pixels a side)."""
    coherence = completeness = 0.0
    for p in POOLS:
        a = patches(F.avg_pool2d(x[None].double(), p)[0] if p > 1 else x.double())
        b = patches(F.avg_pool2d(photo[None].double(), p)[0] if p > 1 else photo.double())
        coherence += float(_nearest(a, b).mean()) / (a.shape[1] * len(POOLS))
        completeness += float(_nearest(b, a).mean()) / (a.shape[1] * len(POOLS))
    return coherence, completeness


def patch_distance(x: Tensor, photo: Tensor) -> float:
    """The bidirectional nearest-neighbour patch distance: the mean of :func:`patch_terms`."""
    return sum(patch_terms(x, photo)) / 2


def random_phase(photo: Tensor, n: int, *, rng: torch.Generator) -> Tensor:
    """``n`` draws ``(n, C, H, W)`` of the stationary Gaussian field with ``photo``'s power spectrum:
    its Fourier magnitudes, each channel's mean, and the phases of white noise's transform."""
    x = photo.double()
    mean = x.mean((-2, -1), keepdim=True)
    magnitude = torch.fft.fft2(x - mean).abs()
    noise = torch.randn((n, *x.shape), generator=rng, dtype=torch.float64)
    phase = torch.fft.fft2(noise)  # a real field's transform: the Hermitian symmetry comes with it
    phase = phase / phase.abs().clamp_min(1e-12)
    return (torch.fft.ifft2(magnitude * phase).real + mean).clamp(-1, 1).to(photo.dtype)


def shuffled_blocks(photo: Tensor, n: int, *, rng: torch.Generator) -> Tensor:
    """``n`` images of the photo's blocks (side ⅛ of its shorter side) in random orders; the
    photo is cut to a whole number of blocks first."""
    b = max(2, min(photo.shape[-2:]) // 8)
    rows, cols = photo.shape[-2] // b, photo.shape[-1] // b
    blocks = rearrange(photo[:, :rows * b, :cols * b], "c (r h) (k w) -> (r k) c h w", h=b, w=b)
    out = [blocks[torch.randperm(len(blocks), generator=rng)] for _ in range(n)]
    return torch.stack([rearrange(o, "(r k) c h w -> c (r h) (k w)", r=rows) for o in out])


class PatchMetrics:
    """``patch`` and ``patch_coherence`` of images of any size (≥ the crop) against the photo,
    beside their yardsticks."""

    def __init__(self, photo: Tensor, *, seed: int = 0):
        self.photo, self.seed = photo.detach().float().cpu(), seed
        self.crop = crop_side(*photo.shape[-2:])
        if self.crop > min(photo.shape[-2:]):
            raise ValueError(f"the patch distance needs a photo of at least {4 * PATCH} pixels a side, "
                             f"got {tuple(photo.shape[-2:])}")
        self._yardsticks: dict[int, dict[str, dict[str, float]]] = {}

    def distance(self, images: Tensor) -> dict[str, float]:
        """``{"patch": …, "patch_coherence": …}``: the means over ``images`` ``(N, C, H, W)``,
        each cut to its crop."""
        images = images[:MAX_IMAGES].detach().float().cpu().clamp(-1, 1)
        h, w = images.shape[-2:]
        if min(h, w) < self.crop:
            raise ValueError(f"images of {h}×{w} are smaller than the metric's {self.crop}×{self.crop} crop")
        g = torch.Generator().manual_seed(self.seed)  # the same crop positions for every set scored
        coherence = completeness = 0.0
        for x in images:
            top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
            left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
            a, b = patch_terms(x[:, top:top + self.crop, left:left + self.crop], self.photo)
            coherence, completeness = coherence + a, completeness + b
        n = len(images)
        return {"patch": (coherence + completeness) / (2 * n), "patch_coherence": coherence / n}

    def yardsticks(self, n: int) -> dict[str, dict[str, float]]:
        """Per score, each yardstick from ``n`` images (as many as the samples), computed once per n."""
        n = min(n, MAX_IMAGES)
        if n not in self._yardsticks:
            g = torch.Generator().manual_seed(self.seed + 1)
            photo = self.photo
            sets = {"crops": photo.expand(n, *photo.shape), "shuffled": shuffled_blocks(photo, n, rng=g),
                    "gaussian": random_phase(photo, n, rng=g),
                    "noise": torch.rand((n, *photo.shape), generator=g) * 2 - 1}
            scores = {k: self.distance(v) for k, v in sets.items()}
            self._yardsticks[n] = {score: {k: v[score] for k, v in scores.items()} for score in SCORES}
        return self._yardsticks[n]

    def __call__(self, samples: Tensor, suffix: str = "") -> dict[str, float]:
        """Both scores of ``samples`` beside their yardsticks, named ``<score><suffix>``."""
        if len(samples) < 1:
            return {}
        got, sticks, out = self.distance(samples), self.yardsticks(len(samples)), {}
        for score in SCORES:
            out.update(beside(score + suffix, got[score], sticks[score]))
        return out


__all__ = ["PatchMetrics", "crop_side", "patch_distance", "patch_terms", "patches", "random_phase", "shuffled_blocks"]
