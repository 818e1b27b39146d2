"""A folder of images (PNG, JPEG, … via PIL), optionally one subfolder per class."""

import sys
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch

from ebm_image.common import ImageData, load_image, to_unit_range
from ebm_image.streaming import StreamedFolder
from ebmcore import EbmError
from ebmcore import config as cfg
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.kit.streaming import Counted

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
    memory_mb: float = cfg.positive("the most memory the decoded training set may take (float32); a larger "
                                    "folder streams from disk, decoded batch by batch", default=2048.0)
    workers: int = cfg.non_negative("a streamed folder: processes decoding the next batches ahead of "
                                    "training (0: in the training process)", default=2)
    on_bad_file: Literal["stop", "skip"] = cfg.doc(
        "an image that does not decode: 'stop' with an error naming it, or 'skip' it (counted as "
        "data/skipped_files in the metrics)", default="stop")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


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
    """Images from a folder (of class subfolders), in memory (a larger folder streams:
    :class:`~ebm_image.streaming.StreamedFolder`)."""

    def __init__(self, *args, skipped_files: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        #: files that did not decode and were left out (None: on_bad_file = "stop")
        self.skipped_files = skipped_files

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1):
        if self.skipped_files is None:
            return super().stream(rng, rank=rank, world=world)
        return Counted(self.dataset(), self.batch_size, rng, rank, world, skipped=self.skipped_files)

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
        y = torch.tensor(labels, dtype=torch.long) if classes else None
        if tensor_bytes(len(files) * (2 if c.flip else 1), c.channels, c.size, c.size) > c.memory_mb * 2**20:
            return StreamedFolder([str(f) for f in files], y, len(classes) if classes else None, c)
        check_fits("$.data.size", tensor_bytes(len(files), c.channels, c.size, c.size),
                   what=f"{len(files):,} images of {c.channels}×{c.size}×{c.size} as float32")
        images, bad = [], []
        for i, path in enumerate(files):
            try:
                images.append(load_image(path, c.size, c.channels))
            except EbmError as exc:
                if c.on_bad_file == "stop":
                    raise EbmError(f"{exc} (data.on_bad_file = \"skip\" trains on without it)") from None
                bad.append(i)
        if bad:
            print(f"warning: {len(bad)} of {len(files)} images in {root} do not decode and are skipped, "
                  f"the first: {files[bad[0]]}", file=sys.stderr)
            if not images:
                raise EbmError(f"{root}: no image decodes")
            if y is not None:
                skipped = set(bad)
                y = y[[i for i in range(len(files)) if i not in skipped]]
        return cls(to_unit_range(torch.from_numpy(np.stack(images)), 255.0), y, batch_size=c.batch_size,
                   conditional=c.conditional, flip=c.flip,
                   skipped_files=len(bad) if c.on_bad_file == "skip" else None,
                   num_classes=len(classes) if classes else None, name=str(root))

