"""The four interfaces of ebm (Energy, Sampler, Generator, Objective) plus Data and Task.

Convention everywhere: p(x) ∝ exp(−E(x)). Tensors are ``(batch, *event_shape)``.
Randomness is passed in explicitly as ``rng: torch.Generator``; no component touches the
global RNG.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


class Batch(NamedTuple):
    """A batch of data: ``x`` is ``(batch, *event_shape)``; ``cond`` (labels, masks…) or None."""

    x: Tensor
    cond: Tensor | None = None


class Energy(nn.Module):
    """E(x); the model is p(x) ∝ exp(−E(x)).

    ``forward(x, cond=None)`` returns one energy per example, shape ``(batch,)``.
    Any ``nn.Module`` with that contract works as an energy; subclassing is optional.
    """

    #: False for an energy over another space than the data's (a latent prior): data
    #: pictures then draw no density of it on the data's axes
    over_data: bool = True

    @abc.abstractmethod
    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor: ...


class Sampler(abc.ABC):
    """A stateless MCMC kernel over x, in the style of BlackJAX.

    ``init`` wraps a starting point in the kernel's ``State`` (a NamedTuple with at least
    ``x``); ``step`` moves it once and returns ``(State, Info)``. The loop that drives the
    kernel is shared (:func:`ebmcore.sampling.run_chain`), so masking, no-grad handling and
    detaching are written once for every sampler.
    """

    #: chain length used by :meth:`run` when ``n_steps`` is not given
    n_steps: int
    #: run the steps through ``torch.compile`` (:mod:`ebmcore.compiled`)
    compile: bool = False

    @abc.abstractmethod
    def init(self, x: Tensor, energy: nn.Module, cond: Tensor | None = None) -> Any: ...

    @abc.abstractmethod
    def step(self, state: Any, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[Any, Any]:
        """One transition. ``mask`` (bool, shaped like x) marks coordinates to keep exactly."""

    def compilable(self, state: Any) -> bool:
        """Whether the compiled path may take the next step from ``state``; False runs it
        eagerly (for state the compiler would specialise on, such as a Python counter)."""
        return True

    def run(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *,
            rng: torch.Generator, cond: Tensor | None = None,
            mask: Tensor | None = None, trace: bool = False,
            temperatures: Sequence[float] | None = None) -> Any:
        """Run ``n_steps`` (default ``self.n_steps``) from ``x0``; returns detached samples.

        ``mask`` (bool, broadcastable to x) marks observed coordinates, kept at ``x0``.
        ``trace=True`` returns ``(samples, history)``; ``temperatures`` (one per step) anneals:
        see :func:`ebmcore.sampling.run_chain`.
        """
        from ebmcore.sampling import run_chain

        steps = self.n_steps if n_steps is None else n_steps
        return run_chain(self, x0, energy, steps, rng=rng, cond=cond, mask=mask, trace=trace,
                         temperatures=temperatures)


class Generator(nn.Module):
    """Anything that proposes x: where chains start, or a trainable proposal network.

    Noise proposals give short-run chains, a replay buffer gives persistent chains, the
    data batch gives contrastive divergence. Generators are modules so that their state
    (a replay buffer, network weights) is checkpointed with the objective.
    """

    @abc.abstractmethod
    def sample(self, n: int, *, rng: torch.Generator, cond: Tensor | None = None,
               data: Tensor | None = None) -> Tensor:
        """Propose ``n`` starting points. ``data`` is the current data batch, for
        generators that start from data (contrastive divergence); others ignore it."""

    def update(self, x: Tensor) -> None:
        """Receive the chain ends of the last :meth:`sample` (a replay buffer stores them)."""

    def fresh(self, n: int, *, rng: torch.Generator, cond: Tensor | None = None) -> Tensor:
        """Starting points independent of training state, for evaluation with fresh chains."""
        return self.sample(n, rng=rng, cond=cond)


class Objective(nn.Module):
    """A learning scheme. It owns the modules it trains and everything with state, so
    ``state_dict()`` is the whole model to checkpoint."""

    @abc.abstractmethod
    def param_groups(self) -> dict[str, nn.Module]:
        """Modules trained by this objective, by group name (one optimizer per group)."""

    @abc.abstractmethod
    def loss(self, batch: Batch, *, rng: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One scalar loss per parameter group, and metrics as 0-d tensors (no host sync)."""

    @abc.abstractmethod
    def sample(self, n: int, *, rng: torch.Generator, cond: Tensor | None = None) -> Tensor:
        """``n`` samples from the model by fresh chains, for evaluation and ``ebm sample``."""


class Data(abc.ABC):
    """A modality: the training set, its shape, how to show samples and how to score them."""

    event_shape: tuple[int, ...]
    batch_size: int
    num_classes: int | None = None

    @abc.abstractmethod
    def dataset(self) -> Batch:
        """The whole training set as one :class:`Batch` (the runner owns batch order)."""

    @abc.abstractmethod
    def save_samples(self, x: Tensor, path: Path) -> None:
        """Write a picture of samples ``x`` to ``path`` (PNG)."""

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        """Sample-quality metrics of ``samples`` against held-out data."""
        return {}

    def report(self, out_dir: Path, samples: Tensor, energy: nn.Module) -> None:
        """Write end-of-run figures beyond the sample picture (e.g. a density plot)."""


class Task(abc.ABC):
    """Something done with a trained model: inpainting, denoising, out-of-distribution scores.

    A recipe holds any number of ``[tasks.<label>]`` tables. Tasks are built after the
    objective (``ctx.built`` holds the data, energy, sampler, generator and objective, so a
    task takes the energy or sampler it needs from ``ctx.require``), run once at the end of
    training after the final evaluation, and again by ``ebm eval RUN_DIR``. They hold no
    state worth checkpointing.
    """

    @abc.abstractmethod
    def run(self, objective: Objective, data: Data, *, rng: torch.Generator, out: Path) -> dict[str, float]:
        """Do the task; return its metrics as floats and write any pictures into ``out``
        (a directory that exists). All randomness comes from ``rng``."""
