"""One photo as a data set (internal learning): the training set is the photo itself.

The photo is one of scikit-image's bundled images (in the wheel, no download) or any image
file PIL reads, resized so that its longer side is ``size`` pixels (its aspect ratio kept)
and mapped to [−1, 1]. Samples are scored by the patch distance of :mod:`ebm_patch.metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ebm_patch.metrics import PatchMetrics
from ebmcore import Batch, Data, EbmError
from ebmcore import config as cfg
from ebmcore.kit.images import read_image
from ebmcore.kit.pictures import image_grid_png

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "brick", "grass", "gravel")


@attrs.frozen
class PhotoConfig:
    """One photo (scikit-image's bundled photos and textures, or an image file): internal learning."""

    name: Literal["camera", "astronaut", "coffee", "chelsea", "brick", "grass", "gravel"] = cfg.doc(
        "scikit-image's bundled photo (ignored when `path` is set)", default="camera")
    path: str = cfg.doc("an image file to use instead (any format PIL reads)", default="")
    size: int = attrs.field(default=64, validator=[attrs.validators.ge(20), attrs.validators.le(1024)],
                            metadata={"doc": "the longer side after resizing (bilinear, antialiased; 20–1024)"})
    channels: Literal[1, 3] = cfg.doc("1: grey, 3: RGB", default=1)
    seed: int = cfg.doc("seed of the metric's yardsticks (crop positions, shuffles, phases)", default=0)


def load_photo(name: str = "camera", path: str = "", size: int = 64, channels: int = 1) -> Tensor:
    """The photo ``(channels, H, W)`` in [−1, 1], its longer side ``size``; an unreadable file →
    :class:`EbmError` naming it."""
    mode = "L" if channels == 1 else "RGB"
    if path:
        img = read_image(Path(path), mode)
    else:
        if name not in PHOTOS:
            raise EbmError(f"unknown photo {name!r}: bundled are {', '.join(PHOTOS)}")
        import skimage.data  # half a second to import: only for the bundled photos

        bundled = {"camera": skimage.data.camera, "astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee,
                   "chelsea": skimage.data.chelsea, "brick": skimage.data.brick, "grass": skimage.data.grass,
                   "gravel": skimage.data.gravel}
        img = Image.fromarray(bundled[name]()).convert(mode)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()) / 127.5 - 1
    x = x.view(img.height, img.width, channels).permute(2, 0, 1)
    h, w = x.shape[-2:]
    shape = (max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w))))
    if shape != (h, w):
        x = F.interpolate(x[None], size=shape, mode="bilinear", align_corners=False,
                          antialias=size < max(h, w))[0]
    return x.clamp(-1, 1)


class PhotoData(Data):
    """The photo as a training set of one image; samples scored by :class:`PatchMetrics`."""

    batch_size = 1

    def __init__(self, photo: Tensor, *, seed: int = 0):
        self.photo = photo
        self.event_shape = tuple(photo.shape)
        self.metrics = PatchMetrics(photo, seed=seed)

    @classmethod
    def from_config(cls, c: PhotoConfig, ctx=None) -> PhotoData:
        return cls(load_photo(c.name, c.path, c.size, c.channels), seed=c.seed)

    def dataset(self) -> Batch:
        return Batch(self.photo[None])

    def save_samples(self, x: Tensor, path: Path) -> None:
        image_grid_png(x, Path(path), columns=4)

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        return self.metrics(samples)


__all__ = ["PHOTOS", "PhotoConfig", "PhotoData", "load_photo"]
