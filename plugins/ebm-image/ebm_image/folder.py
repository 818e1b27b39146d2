"""A folder of images (PNG, JPEG, … via PIL), optionally one subfolder per class."""

from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
from PIL import Image

from ebm_image.common import ImageData, to_unit_range
from ebmcore import EbmError
from ebmcore import config as cfg
from ebmcore.kit.images import read_image
from ebmcore.kit.memory import check_fits, tensor_bytes

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@attrs.frozen
class ImageFolderConfig:
    """Images from a folder; with one subfolder per class, labels are the sorted subfolder names."""

    root: str = cfg.doc("the folder of images (or of class subfolders)")
    size: int = cfg.positive("every image is resized to size × size (bilinear)", default=32)
    channels: Literal[1, 3] = cfg.doc("1: grey, 3: RGB", default=1)
    conditional: bool = cfg.doc("give the class labels as cond (needs class subfolders)", default=False)
    flip: bool = cfg.doc("append horizontally mirrored copies (doubles the set)", default=False)
    batch_size: int = cfg.positive("examples per optimisation step", default=64)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as ``(channels, size, size)`` uint8; an unreadable file → EbmError naming it."""
    img = read_image(path, "L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _walk(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """The image files under ``root``, their labels and the class names (sorted subfolders;
    none when the images lie in ``root`` itself)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = _images_in(root)
    labels: list[int] = []
    if classes:
        if files:
            raise EbmError(f"{root}: has both images and class subfolders; use one or the other")
        for k, name in enumerate(classes):
            found = _images_in(root / name)
            files += found
            labels += [k] * len(found)
    return files, labels, classes


class FolderData(ImageData):
    """Images from a folder (of class subfolders)."""

    @classmethod
    def from_config(cls, c: ImageFolderConfig, ctx=None) -> "FolderData":
        root = Path(c.root)
        try:
            if not root.is_dir():
                raise EbmError(f"{root}: image folder not found")
            files, labels, classes = _walk(root)
        except OSError as exc:  # a folder or entry this user may not read (e.g. under /proc)
            raise EbmError(f"{exc.filename or root}: cannot read the image folder {root}: "
                           f"{exc.strerror or exc}") from None
        if not files:
            raise EbmError(f"{root}: no images found (extensions: {', '.join(EXTENSIONS)})")
        check_fits("$.data.size", tensor_bytes(len(files), c.channels, c.size, c.size),
                   what=f"{len(files):,} images of {c.channels}×{c.size}×{c.size} as float32")
        x = np.stack([load_image(p, c.size, c.channels) for p in files])
        y = torch.tensor(labels, dtype=torch.long) if classes else None
        return cls(to_unit_range(torch.from_numpy(x), 255.0), y, batch_size=c.batch_size,
                   conditional=c.conditional, flip=c.flip,
                   num_classes=len(classes) if classes else None, name=str(root))
