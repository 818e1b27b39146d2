"""The data contract: a modality's training set (in memory, or as a stream), its held-out
split, how its samples are drawn and scored."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ebmcore.errors import EbmError


class Batch(NamedTuple):
    """A batch of data: ``x`` is ``(batch, *event_shape)``; ``cond`` (labels, masks…) or None."""

    x: Tensor
    cond: Tensor | None = None


class Stream(abc.ABC):
    """Training batches without end, for one rank of ``world``. The runner calls :meth:`next`
    once per step and checkpoints :meth:`state`, so a resumed run continues with the very
    batch it would have seen; every rank's stream takes its own share of each global batch."""

    @abc.abstractmethod
    def next(self) -> Batch:
        """The next batch of ``batch_size`` examples."""

    @abc.abstractmethod
    def state(self) -> dict[str, Tensor]:
        """The position, as tensors for the checkpoint (keys under ``data/``, RNGs ``rng/data``)."""

    @abc.abstractmethod
    def restore(self, tensors: dict[str, Tensor]) -> None:
        """Continue from a :meth:`state` (the checkpoint's tensors, others included)."""

    def metrics(self) -> dict[str, float]:
        """Counts logged with each step's metrics (``data/...``: files skipped…); none by default."""
        return {}


class Shuffled(Stream):
    """Epochs of random permutations of an in-memory training set; checkpointable mid-epoch.
    In a world of ``world`` ranks every rank draws the same permutation (same RNG) and takes
    its own ``batch_size`` slice of each global batch of ``world × batch_size``: the shards
    are disjoint within an epoch, the stream's state the same on every rank. A ``batch_size``
    above the (per-rank) set is capped to it: every batch is the whole set, reshuffled."""

    def __init__(self, dataset: Batch, batch_size: int, rng: torch.Generator, rank: int = 0, world: int = 1):
        self.x, self.cond = dataset
        self.n = len(self.x)
        if self.n < world:
            raise EbmError("the data set is empty" if self.n == 0 else
                           f"the data set ({self.n} examples) is smaller than the number of ranks ({world})")
        self.batch_size = min(batch_size, self.n // world)
        self.rank, self.global_batch, self.rng = rank, self.batch_size * world, rng
        self.perm = torch.randperm(self.n, generator=rng)
        self.pos = 0

    def next(self) -> Batch:
        if self.pos + self.global_batch > self.n:
            self.perm = torch.randperm(self.n, generator=self.rng)
            self.pos = 0
        start = self.pos + self.rank * self.batch_size
        idx = self.perm[start:start + self.batch_size]
        self.pos += self.global_batch
        return Batch(self.x[idx], None if self.cond is None else self.cond[idx])

    def state(self) -> dict[str, Tensor]:
        return {"data/perm": self.perm, "data/pos": torch.tensor(self.pos), "rng/data": self.rng.get_state()}

    def restore(self, tensors: dict[str, Tensor]) -> None:
        perm, pos = tensors["data/perm"], int(tensors["data/pos"])
        if perm.dtype != torch.long or not torch.equal(perm.sort().values, torch.arange(self.n)):
            raise ValueError(f"data/perm is not an order of the {self.n} training examples")
        if not 0 <= pos <= self.n:
            raise ValueError(f"data/pos is {pos}, outside 0..{self.n}")
        self.perm, self.pos = perm, pos
        self.rng.set_state(tensors["rng/data"])


class Data(abc.ABC):
    """A modality: the training set, its shape, how to show samples and how to score them.

    The training set is in memory (:meth:`dataset`, which the runner shuffles) or a
    :class:`Stream` (:meth:`stream`, for data beyond memory: the stream owns the order and
    its checkpointed position). Implement one."""

    event_shape: tuple[int, ...]
    batch_size: int
    num_classes: int | None = None
    #: the training batches' ``cond`` holds class labels (a label-conditional model)
    conditional: bool = False
    #: labels left out of the training set and kept in the held-out split (anomaly detection)
    excluded_classes: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: Any, ctx: Any = None) -> Data:
        """The data set of a recipe section's config (by default ``cls(config)``)."""
        return cls(config)

    def dataset(self) -> Batch:
        """The whole training set as one :class:`Batch` (in-memory data)."""
        raise EbmError(f"{type(self).__name__} streams its data: it has no in-memory training set")

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> Stream:
        """The training batches of one rank; by default :class:`Shuffled` :meth:`dataset`."""
        return Shuffled(self.dataset(), self.batch_size, rng, rank, world)

    def heldout(self) -> Batch | None:
        """Examples never trained on (a test split), with labels where known; None if none."""
        return None

    @abc.abstractmethod
    def save_samples(self, x: Tensor, path: Path) -> None:
        """Write a picture of samples ``x`` to ``path`` (PNG)."""

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        """Sample-quality metrics of ``samples``, each beside its yardsticks
        (:mod:`ebmcore.kit.yardsticks`)."""
        return {}

    def report(self, out_dir: Path, samples: Tensor, energy: nn.Module) -> list[Path]:
        """Write end-of-run figures beyond the sample picture (a density plot…); return their paths."""
        return []
