"""A training set beyond memory: examples decoded from disk as the batches need them.

A modality that streams gives :class:`DecodedStream` an :class:`Examples` — the number of
examples and how to decode the i-th (from an image file, a window of a video's frames, a
mesh…) — and the stream does the rest: the order is :class:`ebmcore.Shuffled`'s over the
examples' indices (epochs of permutations drawn from the stream's own RNG, each rank taking
its own slice of every global batch, so the shards are disjoint), ``workers`` processes of a
torch ``DataLoader`` decode the next batches ahead of the training step, and the
checkpointed position is that of the batches trained on, never of those decoded ahead: a
resumed run (after a crash at any moment of an epoch) continues with the very batch it
would have seen.

An example that does not decode either stops the run with the error naming its file
(``skip_bad = False``) or is skipped: its place in the batch goes to another example of the
same batch, and ``data/skipped_files`` counts the examples skipped so far.
"""

from __future__ import annotations

import atexit
import signal
import weakref
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ebmcore import Batch, EbmError, Shuffled


class Examples(Protocol):
    """The examples of a streamed set. Workers are forked from the training process, so an
    ``Examples`` holds what decoding needs (file names, an open descriptor), never the set."""

    def __len__(self) -> int:
        """The number of examples."""

    def __call__(self, i: int) -> Tensor:
        """Example ``i``, of the event shape; an :class:`EbmError` naming the file when it
        does not decode."""


class _Batches(Dataset):
    """The batches of one epoch from batch ``first`` on, for one rank: item ``b`` decodes
    them, with their indices and the errors of the examples that failed."""

    def __init__(self, stream: DecodedStream, first: int):
        self.examples, self.perm, self.first = stream.examples, stream.perm, first
        self.batch_size, self.global_batch, self.rank = stream.batch_size, stream.global_batch, stream.rank
        self.count = stream.n // stream.global_batch - first  # Shuffled drops the epoch's remainder

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, b: int):
        start = (self.first + b) * self.global_batch + self.rank * self.batch_size
        examples, kept, bad = [], [], []
        for i in self.perm[start:start + self.batch_size].tolist():
            try:
                examples.append(self.examples(i))
            except EbmError as exc:
                bad.append(str(exc))
                continue
            kept.append(i)
        return torch.stack(examples) if examples else None, torch.tensor(kept, dtype=torch.long), bad


def _quiet_worker(_: int) -> None:
    # a signal to the process group (Ctrl-C, a scheduler's SIGTERM) is the training process's
    # to handle: it checkpoints, then stops the workers itself (below)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


#: each live stream's DataLoader iterator (the batches decoding ahead), by the stream's id.
#: Held here, not by the stream, so that a stream collected as part of a reference cycle
#: never takes its iterator into the cycle: the garbage collector may close the iterator's
#: queues before the iterator's own shutdown runs, and the workers then never hear that
#: they are done. The stream's finalizer drops its iterator, whose shutdown then runs intact.
_AHEAD: dict[int, object] = {}


@atexit.register
def stop_workers() -> None:
    """End the decoding workers of every stream. Registered after multiprocessing's exit
    handler, so run before it (which would wait for workers that ignore SIGTERM)."""
    _AHEAD.clear()  # each iterator, dropped, ends its workers in order


class DecodedStream(Shuffled):
    """Shuffled batches of ``examples``, decoded ahead by ``workers`` processes (0: in the
    training process); ``labels`` (one per example) go with the batches as ``cond``."""

    def __init__(self, examples: Examples, labels: Tensor | None, *, batch_size: int, rng: torch.Generator,
                 rank: int = 0, world: int = 1, workers: int = 2, skip_bad: bool = False, skipped: int = 0,
                 skip_hint: str = 'data.on_bad_file = "skip" trains on without it'):
        """``skipped``: the files already left out when the set was listed (counted on)."""
        super().__init__(Batch(torch.arange(len(examples))), batch_size, rng, rank, world)
        if labels is not None and len(labels) != len(examples):
            raise ValueError(f"{len(labels)} labels for {len(examples)} examples")
        self.examples, self.labels, self.workers = examples, labels, workers
        self.skip_bad, self.skip_hint, self.skipped = skip_bad, skip_hint, skipped
        weakref.finalize(self, _AHEAD.pop, id(self), None)

    def next(self) -> Batch:
        epoch = self.perm
        indices = super().next().x  # the order moves on exactly as Shuffled's
        ahead = _AHEAD.get(id(self))  # the batches of this epoch decoding ahead, from pos on
        if ahead is None or self.perm is not epoch:
            _AHEAD.pop(id(self), None)  # the last epoch's workers end before the next one's start
            batches = _Batches(self, self.pos // self.global_batch - 1)
            ahead = _AHEAD[id(self)] = iter(DataLoader(batches, batch_size=None, num_workers=self.workers,
                                                       worker_init_fn=_quiet_worker if self.workers else None,
                                                       prefetch_factor=2 if self.workers else None))
        x, kept, bad = next(ahead)
        if not bad and not torch.equal(kept, indices):  # the loader follows the stream's order, or a bug
            raise RuntimeError("DecodedStream: the decoded batch is not the stream's")
        if bad:
            if not self.skip_bad:
                raise EbmError(f"{bad[0]} ({self.skip_hint})")
            if x is None:
                raise EbmError(f"no example of a batch decodes: {bad[0]}")
            self.skipped += len(bad)
            fill = torch.arange(len(bad)) % len(x)  # the batch keeps its size
            x, kept = torch.cat([x, x[fill]]), torch.cat([kept, kept[fill]])
        return Batch(x, None if self.labels is None else self.labels[kept])

    def state(self) -> dict[str, Tensor]:
        return {**super().state(), "data/skipped_files": torch.tensor(self.skipped)}

    def restore(self, tensors: dict[str, Tensor]) -> None:
        super().restore(tensors)
        self.skipped = int(tensors["data/skipped_files"])  # state() always writes it
        _AHEAD.pop(id(self), None)

    def metrics(self) -> dict[str, float]:
        return {"data/skipped_files": float(self.skipped)} if self.skip_bad else {}


class Counted(Shuffled):
    """An in-memory set whose loading left files out (``on_bad_file = "skip"``): shuffled as
    ever, with their count in the metrics as ``data/skipped_files``."""

    def __init__(self, dataset: Batch, batch_size: int, rng: torch.Generator, rank: int = 0, world: int = 1, *,
                 skipped: int):
        super().__init__(dataset, batch_size, rng, rank, world)
        self.skipped = skipped

    def metrics(self) -> dict[str, float]:
        return {"data/skipped_files": float(self.skipped)}


def spaced(examples: Examples, most: int) -> Tensor:
    """At most ``most`` of the examples, decoded, spaced evenly from the first to the last
    (a streamed set's sample for its metrics)."""
    picked = torch.linspace(0, len(examples) - 1, min(most, len(examples))).round().long().unique()
    return torch.stack([examples(int(i)) for i in picked])
