"""The interfaces of ebm: Energy, Sampler, Generator, Objective and Task (Data: :mod:`ebmcore.data`).

Convention everywhere: p(x) ∝ exp(−E(x)). Tensors are ``(batch, *event_shape)``.
Randomness is passed in explicitly as ``rng: torch.Generator``; no component touches the
global RNG. What a component may or may not do is declared here, with a default where it
is optional: components use each other only through these members.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from ebmcore.data import Batch, Data
from ebmcore.errors import EbmError, PluginError
from ebmcore.sampling import Tempered, run_chain


class Condition(enum.Enum):
    """What a conditional energy or generator takes as ``cond``."""

    NONE = "none"
    #: integer class labels ``(batch,)``
    LABEL = "label"
    #: the observed part of x: :func:`ebmcore.kit.masks.completion_condition`
    COMPLETION = "completion"
    #: integer noise levels ``(batch,)`` of a diffusion model
    LEVEL = "level"


class Energy(nn.Module):
    """E(x); the model is p(x) ∝ exp(−E(x)). ``forward(x, cond=None)`` returns one energy
    per example, shape ``(batch,)``."""

    #: False for an energy over another space than the data's (a latent prior): data
    #: pictures then draw no density of it on the data's axes
    over_data: bool = True
    condition: Condition = Condition.NONE

    @abc.abstractmethod
    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor: ...

    def tempered(self, temperature: Tensor) -> nn.Module:
        """This model at a temperature per example ``(batch,)``, as parallel tempering runs
        its replicas: exp(−E(x)/T). A model whose sampler needs another tempered family
        overrides it (an RBM scales its joint E(v, h), which Gibbs samples exactly)."""
        return Tempered(self, temperature)


class Sampler(abc.ABC):
    """A stateless MCMC kernel over x, in the style of BlackJAX.

    A sampler is made from its settings, an attrs class (:attr:`Config`, the recipe
    section's schema, with ``n_steps`` and ``compile``): ``Langevin(config)`` or
    ``Langevin(step_size=0.01)``. ``self.config`` is the one place they live.

    ``init`` wraps a starting point in the kernel's State, a NamedTuple whose first field
    is ``x`` (and with ``grad``, ∇E at x, if the kernel carries it); ``step`` moves it once
    and returns ``(State, Info)``, Info a NamedTuple of per-chain tensors for diagnostics
    (acceptance…; ``grad``: the gradient the step used), or ``()``. The loop that drives
    the kernel is shared (:func:`ebmcore.sampling.run_chain`), so masking, no-grad handling
    and detaching are written once for every sampler.
    """

    Config: ClassVar[type]
    #: the compiled calls of :mod:`ebmcore.compiled`, made on first use
    compiled: Any = None

    def __init__(self, config: Any = None, /, **settings: Any):
        if config is None:
            config = self.Config(**settings)  # validated as a recipe section is
        elif settings or not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__} or keyword settings")
        missing = {"n_steps", "compile"} - {a.name for a in attrs.fields(type(config))}
        if missing:
            raise PluginError(f"sampler {type(self).__name__}: its Config ({type(config).__name__}) has no "
                              f"{' and no '.join(sorted(missing))}; every sampler's settings have n_steps "
                              "(the chain length) and compile (ebmcore.config.compile_flag())")
        self.config = config

    @classmethod
    def from_config(cls, config: Any, ctx: Any = None) -> Sampler:
        return cls(config)

    @property
    def n_steps(self) -> int:
        """Chain length of :meth:`run` when ``n_steps`` is not given."""
        return self.config.n_steps

    @property
    def compile(self) -> bool:
        """Run the steps through ``torch.compile`` (:mod:`ebmcore.compiled`)."""
        return self.config.compile

    @property
    def clamp(self) -> tuple[float, float] | None:
        """The bounds the kernel clamps x to after each step, or None."""
        return None

    @property
    def replicas(self) -> int:
        """Rows run per chain of the target: given n·r starts, :meth:`run` returns n·r rows,
        the first n chains of the target, the rest auxiliary (parallel tempering's hotter
        replicas) for a persistent generator to keep."""
        return 1

    @abc.abstractmethod
    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> Any:
        """The kernel's State at ``x`` (drawing what it needs at the start, such as a momentum, from ``rng``)."""

    @abc.abstractmethod
    def step(self, state: Any, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[Any, Any]:
        """One transition. ``mask`` (bool, shaped like x) marks coordinates to keep exactly."""

    def compilable(self, state: Any) -> bool:
        """Whether the compiled path may take the next step from ``state``; False runs it
        eagerly (for state the compiler would specialise on, such as a Python counter)."""
        return True

    def run(self, x0: Tensor, energy: nn.Module | Callable[..., Tensor], n_steps: int | None = None, *,
            rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None,
            trace: bool = False, temperatures: Sequence[float] | None = None) -> Any:
        """Run ``n_steps`` (default ``self.n_steps``) from ``x0``; returns detached samples
        (see :func:`ebmcore.sampling.run_chain` for ``mask``, ``trace`` and ``temperatures``)."""
        steps = self.n_steps if n_steps is None else n_steps
        return run_chain(self, x0, energy, steps, rng=rng, cond=cond, mask=mask, trace=trace,
                         temperatures=temperatures)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in attrs.asdict(self.config).items())})"


class PyramidSampler(Sampler):
    """A sampler that goes through the resolutions of a multi-scale energy, coarse to fine."""

    @abc.abstractmethod
    def run_pyramid(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *, rng: torch.Generator,
                    cond: Tensor | None = None, mask: Tensor | None = None) -> list[Tensor]:
        """Samples at every resolution, coarse to fine (detached); :meth:`run` gives the last."""


class Generator(nn.Module):
    """Anything that proposes x: where chains start, or a trainable proposal network.

    Noise proposals give short-run chains, a replay buffer gives persistent chains, the
    data batch gives contrastive divergence. Generators are modules so that their state
    (a replay buffer, network weights) is checkpointed with the objective.
    """

    condition: Condition = Condition.NONE

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


class LatentGenerator(Generator):
    """A trainable generator x = g(z, cond) + ε, z ~ N(0, I), ε ~ N(0, σ²I), which cooperative
    and latent-variable objectives train; ``sample`` proposes g(z) without gradients."""

    latent_dim: int
    #: σ of ε: reconstruction errors ‖x − g(z)‖²/(2σ²) are weighted by it
    sigma: float
    #: whether :meth:`encode` works (an inference network q(z | x, cond): a VAE)
    can_encode: bool = False

    @abc.abstractmethod
    def latent(self, n: int, rng: torch.Generator) -> Tensor:
        """``n`` latents z ~ N(0, I), ``(n, latent_dim)``."""

    @abc.abstractmethod
    def decode(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """g(z, cond), with gradients."""

    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z | x, cond)."""
        raise EbmError(f"{type(self).__name__} has no encoder")

    def sample(self, n, *, rng, cond=None, data=None):
        with torch.no_grad():
            return self.decode(self.latent(n, rng), cond)


class Objective(nn.Module):
    """A learning scheme. It owns the modules it trains and everything with state, so
    ``state_dict()`` is the whole model to checkpoint."""

    #: :meth:`complete` works (tasks completing "by the objective" check it when they are built)
    completes: bool = False

    @abc.abstractmethod
    def param_groups(self) -> dict[str, nn.Module]:
        """Modules trained by this objective, by group name (one optimizer per group)."""

    @abc.abstractmethod
    def loss(self, batch: Batch, *, rng: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One scalar loss per parameter group, and metrics as 0-d tensors (no host sync)."""

    @abc.abstractmethod
    def sample(self, n: int, *, rng: torch.Generator, cond: Tensor | None = None) -> Tensor:
        """``n`` samples from the model by fresh chains, for evaluation and ``ebm sample``."""

    def complete(self, x: Tensor, missing: Tensor, *, rng: torch.Generator, n_steps: int | None = None) -> Tensor:
        """``x`` with its ``missing`` entries (bool, like x) filled by the model (``completes``), or EbmError."""
        raise EbmError(f"objective {type(self).__name__} has no completion model")


class Task(abc.ABC):
    """Something done with a trained model: inpainting, denoising, out-of-distribution scores.

    A recipe holds any number of ``[tasks.<label>]`` tables. Tasks are built after the
    objective (taking the energy, sampler or objective they need from ``ctx.require``), run
    once at the end of training after the final evaluation, and again by ``ebm eval RUN_DIR``.
    They hold no state worth checkpointing."""

    #: also run at every scored evaluation during training, its metrics in that record
    #: (a held-out likelihood followed as the model learns)
    every_evaluation: bool = False

    @abc.abstractmethod
    def run(self, objective: Objective, data: Data, *, rng: torch.Generator, out: Path) -> dict[str, float]:
        """Do the task; return its metrics as floats and write any pictures into ``out``
        (a directory that exists). All randomness comes from ``rng``."""
