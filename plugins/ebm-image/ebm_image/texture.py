"""One texture exemplar as a data set, and a patch-statistics distance to it.

The exemplar is one of scikit-image's bundled 512×512 grey textures (``brick``, ``grass``,
``gravel``; in the wheel, no download) or any image file (``path``), converted to grey,
resized to ``scale × scale`` and mapped to [−1, 1]. Like FRAME, the Generative ConvNet and
multigrid texture experiments, a model learns from that one image: the training set is
``n_crops`` random ``size × size`` crops of it (drawn once, from ``seed``, so the runner's
shuffled batches apply unchanged). With ``scale == size`` every crop is the whole exemplar.

The score (:func:`gram_distance`) compares the patch statistics of each sample with those of
the whole exemplar: features are a fixed random convolution (32 zero-mean 5×5 filters, then
ReLU; seed 0, part of no model) applied at three scales (the image average-pooled by 1, 2
and 4); at each scale the statistic is the Gram matrix of the features with a constant
channel added, averaged over positions (so it holds the feature means, their second
moments and cross-correlations, independent of the image size). The distance of a sample
is the relative Frobenius error ‖G(x) − G(e)‖ / ‖G(e)‖ averaged over the three scales;
``texture/gram`` is its mean over the samples. It is 0 for the exemplar itself; uniform
noise on [−1, 1] (``texture/gram_noise``, same number of images, fixed seed) is the
ceiling a model must beat; ``texture/gram_crops`` (the training crops themselves) is what
faithful samples of the exemplar's own patches reach; ``texture/gram_gaussian`` is a
full-covariance Gaussian fitted to the crops (the simplest model), and
``texture/gram_vs_gaussian`` the score over it (:class:`ebmcore.kit.metrics.Yardsticks`).
"""

from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ebm_image.common import ImageData
from ebmcore import EbmError
from ebmcore import config as cfg
from ebmcore.kit.images import read_image
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.kit.metrics import Yardsticks

BUNDLED = ("brick", "grass", "gravel")
POOLS = (1, 2, 4)
_FEATURES = 32


@attrs.frozen
class TextureConfig:
    """One texture exemplar (scikit-image's brick, grass, gravel or an image file); crops of it."""

    name: Literal["brick", "grass", "gravel"] = cfg.doc(
        "scikit-image's bundled 512×512 texture (ignored when `path` is set)", default="brick")
    path: str = cfg.doc("an image file to use instead (any format PIL reads; converted to grey)",
                        default="")
    # at most 4096: the percentile stretch (torch.quantile) takes at most 2**24 values
    scale: int = attrs.field(default=128, validator=[attrs.validators.gt(0), attrs.validators.le(4096)],
                             metadata={"doc": "the exemplar is resized to scale × scale (bilinear, antialiased)"})
    size: int = cfg.positive("training crops and samples are size × size (≤ scale)", default=64)
    n_crops: int = cfg.positive("random crops making the training set (drawn once from `seed`)",
                                default=256)
    stretch: bool = cfg.doc("stretch the exemplar's 1st–99th percentiles to [−1, 1] (else 0..255 → "
                            "[−1, 1])", default=True)
    seed: int = cfg.doc("seed of the crop positions", default=0)
    batch_size: int = cfg.positive("examples per optimisation step", default=32)


def load_exemplar(name: str = "brick", path: str = "", scale: int = 128, stretch: bool = True) -> torch.Tensor:
    """The exemplar ``(1, scale, scale)`` in [−1, 1]; a missing or unreadable file → EbmError naming it."""
    if path:
        img = read_image(Path(path), "L")
    else:
        if name not in BUNDLED:
            raise EbmError(f"unknown texture {name!r}: bundled are {', '.join(BUNDLED)}")
        import skimage.data

        img = Image.fromarray({"brick": skimage.data.brick, "grass": skimage.data.grass,
                               "gravel": skimage.data.gravel}[name]()).convert("L")
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None, None] / 255.0
    if tuple(x.shape[-2:]) != (scale, scale):
        x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False,
                          antialias=scale < min(x.shape[-2:]))
    if stretch:
        lo, hi = torch.quantile(x.flatten(), torch.tensor([0.01, 0.99]))
        x = (x - lo) / (hi - lo).clamp_min(1e-6)
    return (x * 2 - 1).clamp(-1, 1)[0]


def random_crops(image: torch.Tensor, n: int, size: int, *, rng: torch.Generator) -> torch.Tensor:
    """``n`` crops ``(n, C, size, size)`` at uniformly random positions of ``image`` ``(C, H, W)``."""
    h, w = image.shape[-2:]
    if size > h or size > w:
        raise EbmError(f"texture: crops of {size}×{size} do not fit the {h}×{w} exemplar (size ≤ scale)")
    top = torch.randint(0, h - size + 1, (n,), generator=rng)
    left = torch.randint(0, w - size + 1, (n,), generator=rng)
    return torch.stack([image[:, t:t + size, l:l + size] for t, l in zip(top.tolist(), left.tolist(), strict=True)])


def _metric_filters(channels: int) -> torch.Tensor:
    """The metric's fixed random filters: 32 zero-mean, unit-norm 5×5 filters (seed 0)."""
    w = torch.randn(_FEATURES, channels, 5, 5, generator=torch.Generator().manual_seed(0))
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)
    return w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def gram_statistics(x: torch.Tensor) -> list[torch.Tensor]:
    """Per image and per scale, the Gram matrix ``(B, 33, 33)`` of [1, ReLU(conv(x))] over positions."""
    x = x.detach().float()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    w = _metric_filters(x.shape[1])
    out = []
    for p in POOLS:
        xp = F.avg_pool2d(x, p) if p > 1 else x
        f = F.relu(F.conv2d(xp, w)).flatten(2)  # (B, 32, positions), 'valid': no border effects
        f = torch.cat([torch.ones_like(f[:, :1]), f], dim=1)
        out.append(f @ f.transpose(1, 2) / f.shape[-1])
    return out


def gram_distance(samples: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
    """Per sample, the relative Gram error against ``exemplar`` averaged over the three scales."""
    ref = gram_statistics(exemplar)
    got = gram_statistics(samples)
    per_scale = [(g - r).flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1) for g, r in zip(got, ref, strict=True)]
    return torch.stack(per_scale).mean(0)


class TextureData(ImageData):
    """Random crops of one exemplar; scores samples by their patch statistics against it."""

    def __init__(self, exemplar: torch.Tensor, *, size: int = 64, n_crops: int = 256, seed: int = 0,
                 batch_size: int = 32, name: str = "texture"):
        crops = random_crops(exemplar, n_crops, size, rng=torch.Generator().manual_seed(seed))
        super().__init__(crops, batch_size=batch_size, name=name)
        self.exemplar = exemplar
        self.crops_distance = float(gram_distance(crops[:64], exemplar).mean())
        shape = self.event_shape
        self.yardsticks = Yardsticks(self.distance, train=crops, seed=0,
                                     noise=lambda n, g: torch.rand((n, *shape), generator=g) * 2 - 1)

    @classmethod
    def from_config(cls, c: TextureConfig, ctx=None) -> "TextureData":
        if c.size > c.scale:
            raise EbmError(f"data.texture: size = {c.size} is larger than scale = {c.scale} "
                           "(crops are cut from the scale × scale exemplar)")
        check_fits("$.data.n_crops", tensor_bytes(c.n_crops, c.size, c.size),
                   what=f"{c.n_crops:,} float32 crops of {c.size}×{c.size}")
        exemplar = load_exemplar(c.name, c.path, c.scale, c.stretch)
        return cls(exemplar, size=c.size, n_crops=c.n_crops, seed=c.seed, batch_size=c.batch_size,
                   name=c.path or c.name)

    def distance(self, x: torch.Tensor) -> float:
        """The mean Gram distance of images ``x`` to the exemplar."""
        return float(gram_distance(x, self.exemplar).mean())

    def evaluate(self, samples: torch.Tensor) -> dict[str, float]:
        gram, sticks = self.distance(samples), self.yardsticks(len(samples))
        return {"texture/gram": gram, "texture/gram_noise": sticks["noise"],
                "texture/gram_crops": self.crops_distance, "texture/gram_gaussian": sticks["gaussian"],
                "texture/gram_vs_gaussian": gram / sticks["gaussian"]}


__all__ = ["TextureConfig", "TextureData", "gram_distance", "gram_statistics", "load_exemplar", "random_crops"]
