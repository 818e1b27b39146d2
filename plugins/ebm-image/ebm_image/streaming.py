"""An image folder beyond memory: its images decoded from disk batch by batch
(:class:`ebmcore.kit.streaming.DecodedStream`), only the file names held.

The examples' indices are those of the folder in memory (the mirrored copies after the
files, with ``flip``), so a streamed folder gives the very batches the folder in memory
gives; a file that does not decode stops the run naming it or is skipped and counted, per
``on_bad_file``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ebm_image.common import load_image, to_unit_range
from ebmcore import Data, EbmError
from ebmcore.kit.pictures import image_grid_png
from ebmcore.kit.streaming import DecodedStream


class ImageFiles:
    """Image ``i`` of ``files`` as ``(C, size, size)`` in [−1, 1]; with ``flip``, the indices
    after the files are their mirrored copies."""

    def __init__(self, files: list[str], *, size: int, channels: int, flip: bool):
        self.files, self.size, self.channels, self.flip = files, size, channels, flip

    def __len__(self) -> int:
        return len(self.files) * (2 if self.flip else 1)

    def __call__(self, i: int) -> torch.Tensor:
        image = load_image(Path(self.files[i % len(self.files)]), self.size, self.channels)
        if i >= len(self.files):
            image = image[..., ::-1]
        return to_unit_range(torch.tensor(np.ascontiguousarray(image)), 255.0)  # a copy: PIL's array is read-only


class StreamedFolder(Data):
    """The training set of an image folder as a :class:`~ebmcore.kit.streaming.DecodedStream`
    (no held-out split, no scores: those need the images in memory)."""

    def __init__(self, files: list[str], labels: torch.Tensor | None, num_classes: int | None, c):
        if c.conditional and labels is None:
            raise EbmError(f"{c.root}: conditional = true needs labels (class subfolders), but it has none")
        self.files, self.labels, self.c = files, labels, c
        self.event_shape = (c.channels, c.size, c.size)
        self.batch_size, self.num_classes, self.conditional = c.batch_size, num_classes, c.conditional

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> DecodedStream:
        c = self.c
        labels = self.labels.repeat(2 if c.flip else 1) if c.conditional else None
        return DecodedStream(ImageFiles(self.files, size=c.size, channels=c.channels, flip=c.flip), labels,
                             batch_size=c.batch_size, rng=rng, rank=rank, world=world, workers=c.workers,
                             skip_bad=c.on_bad_file == "skip")

    def save_samples(self, x: torch.Tensor, path: Path) -> None:
        image_grid_png(x, Path(path))
