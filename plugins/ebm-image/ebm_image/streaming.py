"""An image folder beyond memory: batches decoded from disk as they are needed.

The order is :class:`ebmcore.Shuffled`'s — epochs of permutations drawn from the stream's
own RNG, each rank taking its own slice of every global batch, so the shards are disjoint
— but only the file names are held, and ``workers`` processes of a torch ``DataLoader``
decode the next batches ahead of the training step. The checkpointed position is that of
the batches trained on, never of those decoded ahead: a resumed run (after a crash at any
moment of an epoch) continues with the very batch it would have seen.

A file that does not decode either stops the run with an error naming it
(``on_bad_file = "stop"``) or is skipped (``"skip"``): its place in the batch goes to
another image of the same batch, and ``data/skipped_files`` counts the files skipped so far.
"""

from __future__ import annotations

import atexit
import signal
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ebm_image.common import load_image, to_unit_range
from ebmcore import Batch, Data, EbmError, Shuffled
from ebmcore.kit.pictures import image_grid_png


class _Batches(Dataset):
    """The batches of one epoch from batch ``first`` on, for one rank: item ``b`` decodes
    them as uint8 ``(batch, C, H, W)``, with labels and the names of files that failed."""

    def __init__(self, stream: FolderStream, first: int):
        self.files, self.labels = stream.files, stream.labels
        self.size, self.channels = stream.size, stream.channels
        self.perm, self.first = stream.perm, first
        self.batch_size, self.global_batch, self.rank = stream.batch_size, stream.global_batch, stream.rank
        self.count = stream.n // stream.global_batch - first  # Shuffled drops the epoch's remainder

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, b: int):
        start = (self.first + b) * self.global_batch + self.rank * self.batch_size
        picked = self.perm[start:start + self.batch_size].tolist()
        images, kept, bad = [], [], []
        for i in picked:
            name = self.files[i % len(self.files)]  # i ≥ the file count: the mirrored copy
            try:
                image = load_image(Path(name), self.size, self.channels)
            except EbmError as exc:
                bad.append(str(exc))
                continue
            images.append(image[..., ::-1] if i >= len(self.files) else image)
            kept.append(i)
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images))) if images else None
        kept = torch.tensor(kept, dtype=torch.long)
        labels = None if self.labels is None else self.labels[kept % len(self.files)]
        return x, labels, kept, bad


def _quiet_worker(_: int) -> None:
    # a signal to the process group (Ctrl-C, a scheduler's SIGTERM) is the training process's
    # to handle: it checkpoints, then stops the workers itself (below)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


#: streams with workers, stopped at exit before multiprocessing's own exit handler (which
#: would wait for workers that ignore SIGTERM); atexit runs this first, registered later
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    for stream in list(_LIVE):
        stream._ahead = None  # the DataLoader iterator, dropped, ends its workers in order


class FolderStream(Shuffled):
    """Shuffled batches of image files, decoded ahead by ``workers`` processes. The order
    and position are :class:`~ebmcore.Shuffled`'s over the images' indices (the mirrored
    copies after the files, with ``flip``); ``labels`` go with the batches as ``cond``."""

    def __init__(self, files: list[str], labels: torch.Tensor | None, *, size: int, channels: int, flip: bool,
                 batch_size: int, rng: torch.Generator, rank: int = 0, world: int = 1, workers: int = 2,
                 skip_bad: bool = False):
        super().__init__(Batch(torch.arange(len(files) * (2 if flip else 1))), batch_size, rng, rank, world)
        self.files, self.labels, self.size, self.channels = files, labels, size, channels
        self.workers, self.skip_bad, self.skipped = workers, skip_bad, 0
        self._ahead = None  # the batches of this epoch decoding ahead, from pos on
        _LIVE.add(self)

    def next(self) -> Batch:
        epoch = self.perm
        indices = super().next().x  # the order moves on exactly as Shuffled's
        if self._ahead is None or self.perm is not epoch:
            batches = _Batches(self, self.pos // self.global_batch - 1)
            self._ahead = iter(DataLoader(batches, batch_size=None, num_workers=self.workers,
                                          worker_init_fn=_quiet_worker if self.workers else None,
                                          prefetch_factor=2 if self.workers else None))
        x, labels, kept, bad = next(self._ahead)
        if not bad and not torch.equal(kept, indices):  # the loader follows the stream's order, or a bug
            raise RuntimeError("FolderStream: the decoded batch is not the stream's")
        if bad:
            if not self.skip_bad:
                raise EbmError(f"{bad[0]} (data.on_bad_file = \"skip\" trains on without it)")
            if x is None:
                raise EbmError(f"no image of a batch decodes: {bad[0]}")
            self.skipped += len(bad)
            fill = torch.arange(len(bad)) % len(x)  # the batch keeps its size
            x = torch.cat([x, x[fill]])
            labels = None if labels is None else torch.cat([labels, labels[fill]])
        return Batch(to_unit_range(x, 255.0), labels)

    def state(self) -> dict[str, torch.Tensor]:
        return {**super().state(), "data/skipped_files": torch.tensor(self.skipped)}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        super().restore(tensors)
        self.skipped, self._ahead = int(tensors.get("data/skipped_files", torch.tensor(0))), None

    def metrics(self) -> dict[str, float]:
        return {"data/skipped_files": float(self.skipped)} if self.skip_bad else {}


class StreamedFolder(Data):
    """The training set of an image folder as a :class:`FolderStream` (no held-out split,
    no scores: those need the images in memory)."""

    def __init__(self, files: list[str], labels: torch.Tensor | None, num_classes: int | None, c):
        if c.conditional and labels is None:
            raise EbmError(f"{c.root}: conditional = true needs labels (class subfolders), but it has none")
        self.files, self.labels, self.c = files, labels, c
        self.event_shape = (c.channels, c.size, c.size)
        self.batch_size, self.num_classes, self.conditional = c.batch_size, num_classes, c.conditional

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> FolderStream:
        c = self.c
        return FolderStream(self.files, self.labels if c.conditional else None, size=c.size, channels=c.channels,
                            flip=c.flip, batch_size=c.batch_size, rng=rng, rank=rank, world=world,
                            workers=c.workers, skip_bad=c.on_bad_file == "skip")

    def save_samples(self, x: torch.Tensor, path: Path) -> None:
        image_grid_png(x, Path(path))
