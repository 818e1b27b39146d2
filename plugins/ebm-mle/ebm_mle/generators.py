"""Where chains start. Noise gives short-run chains (Nijkamp et al. 2019), a replay buffer
gives persistent chains (Du & Mordatch 2019), the data batch gives contrastive divergence."""

import attrs
import torch
from torch import Tensor

from ebmcore import EbmError, Generator
from ebmcore import config as cfg
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.kit.metrics import FittedGaussian


def below_high(inst, attr, value):
    if not value < inst.high:
        raise ValueError(f"must be < high ({inst.high}), got {value}")


@attrs.frozen
class UniformNoiseConfig:
    """Uniform noise on [low, high]: short-run chains from noise."""

    low: float = attrs.field(default=-1.0, validator=below_high, metadata={"doc": "lower bound"})
    high: float = cfg.doc("upper bound", default=1.0)


@attrs.frozen
class GaussianNoiseConfig:
    """Gaussian noise N(mean, std²): short-run chains from noise."""

    mean: float = cfg.doc("mean of every coordinate", default=0.0)
    std: float = cfg.positive("standard deviation", default=1.0)


class _Noise(Generator):
    def __init__(self, event_shape, device=None):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.device = torch.device(device or "cpu")

    def _randn(self, n: int, rng: torch.Generator) -> Tensor:
        return torch.randn((n, *self.event_shape), generator=rng, device=self.device)


class UniformNoise(_Noise):
    def __init__(self, event_shape, low: float = -1.0, high: float = 1.0, device=None):
        super().__init__(event_shape, device)
        self.low, self.high = low, high

    @classmethod
    def from_config(cls, c: UniformNoiseConfig, ctx) -> "UniformNoise":
        return cls(ctx.need_event_shape("generator 'uniform'"), c.low, c.high, ctx.device)

    def sample(self, n, *, rng, cond=None, data=None):
        u = torch.rand((n, *self.event_shape), generator=rng, device=self.device)
        return u.mul_(self.high - self.low).add_(self.low)


class GaussianNoise(_Noise):
    def __init__(self, event_shape, mean: float = 0.0, std: float = 1.0, device=None):
        super().__init__(event_shape, device)
        self.mean, self.std = mean, std

    @classmethod
    def from_config(cls, c: GaussianNoiseConfig, ctx) -> "GaussianNoise":
        return cls(ctx.need_event_shape("generator 'gaussian'"), c.mean, c.std, ctx.device)

    def sample(self, n, *, rng, cond=None, data=None):
        return self._randn(n, rng).mul_(self.std).add_(self.mean)


@attrs.frozen
class FittedGaussianConfig:
    """The training data's Gaussian (mean and full covariance), or a mixture of its classes'
    Gaussians: chains that start near the data (JEM++'s informative initialisation)."""

    per_class: bool = cfg.doc(
        "one Gaussian per class, mixed by the classes' frequencies; labelled chains (cond) start "
        "in their class's Gaussian (needs labelled data)", default=False)


class FittedGaussianNoise(Generator):
    """Draws from Gaussians fitted when the generator is built: ``mean[k] + factor[k] @ z``
    for component k (one component, or one per class)."""

    def __init__(self, means: Tensor, factors: Tensor, weights: Tensor, event_shape):
        super().__init__()
        self.event_shape = tuple(event_shape)
        # refitted from the data at every build: not part of a checkpoint
        self.register_buffer("means", means, persistent=False)
        self.register_buffer("factors", factors, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    @classmethod
    def from_config(cls, c: FittedGaussianConfig, ctx) -> "FittedGaussianNoise":
        who = "generator 'fitted_gaussian'"
        train = ctx.require("data", who).dataset()
        if not c.per_class:
            parts = [train.x]
        elif train.cond is None or not ctx.num_classes:
            raise EbmError(f"{who}: per_class = true needs labelled data (data.conditional = true)")
        else:
            labels = train.cond.long()
            parts = [train.x[labels == k] for k in range(ctx.num_classes)]
            empty = [k for k, part in enumerate(parts) if len(part) < 2]
            if empty:
                raise EbmError(f"{who}: classes {empty} have fewer than 2 training examples to fit")
        dim = train.x[0].numel()
        # the fit holds a d × d covariance in float64 (CPU) and keeps a d × d factor per component
        check_fits("$.generator", tensor_bytes(dim, dim, itemsize=8) * 3,
                   what=f"the covariance of {dim:,}-dimensional examples")
        check_fits("$.generator", tensor_bytes(len(parts), dim, dim), device=ctx.device,
                   what=f"{len(parts)} Gaussian factor(s) of {dim:,} × {dim:,}")
        fits = [FittedGaussian(part) for part in parts]
        rank = max(f.factor.shape[1] for f in fits)  # a class with fewer examples than dimensions has less
        factors = torch.stack([torch.nn.functional.pad(f.factor, (0, rank - f.factor.shape[1])) for f in fits])
        counts = torch.tensor([float(len(part)) for part in parts])
        return cls(torch.stack([f.mean for f in fits]).float().to(ctx.device), factors.float().to(ctx.device),
                   (counts / counts.sum()).to(ctx.device), train.x.shape[1:])

    def sample(self, n, *, rng, cond=None, data=None):
        k = len(self.weights)
        if cond is not None and k > 1:
            comp = cond.long().to(self.means.device)
        else:
            comp = torch.multinomial(self.weights, n, replacement=True, generator=rng)
        z = torch.randn((n, self.factors.shape[2]), generator=rng, device=self.means.device)
        x = z.new_empty((n, self.means.shape[1]))
        for c in range(k):  # one product per component: gathering a factor per draw costs n × d² memory
            rows = comp == c
            x[rows] = self.means[c] + z[rows] @ self.factors[c].T
        return x.view(n, *self.event_shape)

    def fresh(self, n, *, rng, cond=None):
        return self.sample(n, rng=rng, cond=cond)


def _noise_from(c, event_shape, ctx) -> Generator:
    if c.fresh == "uniform":
        return UniformNoise(event_shape, c.low, c.high, ctx.device)
    if c.fresh == "gaussian":
        return GaussianNoise(event_shape, 0.0, c.std, ctx.device)
    return ctx.build("generator", "fitted_gaussian", per_class=c.fresh == "fitted_per_class")


@attrs.frozen
class ReplayBufferConfig:
    """Persistent chains: restart from a buffer of past chain ends, a fraction from fresh noise."""

    size: int = cfg.positive("number of stored samples", default=10000)
    reinit: float = cfg.fraction("fraction of chains started from fresh noise", default=0.05)
    fresh: str = attrs.field(
        default="uniform", validator=attrs.validators.in_(("uniform", "gaussian", "fitted", "fitted_per_class")),
        metadata={"doc": "fresh noise: 'uniform' on [low, high], 'gaussian' with std, or generator "
                         "'fitted_gaussian': the data's Gaussian ('fitted') or its classes' ('fitted_per_class')"})
    low: float = attrs.field(default=-1.0, validator=below_high, metadata={"doc": "uniform lower bound"})
    high: float = cfg.doc("uniform upper bound", default=1.0)
    std: float = cfg.positive("gaussian standard deviation", default=1.0)
    replacement: bool = cfg.doc(
        "draw the stored points with replacement (IGEBM, JEM); false: without, so that each stored "
        "chain is continued at most once per draw — with size = batch and reinit = 0 the buffer is "
        "one fixed set of persistent chains (PCD, Tieleman 2008), drawn in the order stored (so "
        "persistent tempering's ladder keeps its temperatures); drawn with replacement that set "
        "would drift to copies of a few chains", default=True)


class ReplayBuffer(Generator):
    """A ring buffer of chain ends (IGEBM): ``sample`` draws stored points (and fresh noise
    with probability ``reinit``); ``update`` writes the chain ends back, oldest first out."""

    def __init__(self, event_shape, size: int = 10000, reinit: float = 0.05,
                 noise: Generator | None = None, device=None, replacement: bool = True):
        super().__init__()
        self.noise = noise or UniformNoise(event_shape, device=device)
        self.size, self.reinit, self.replacement = size, reinit, replacement
        self.register_buffer("x", torch.zeros((size, *event_shape), device=device))
        self.register_buffer("count", torch.zeros((), dtype=torch.long, device=device))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long, device=device))
        # host copies of count and ptr: reading the buffers every step would wait for the device
        self._count = self._ptr = 0
        self.register_load_state_dict_post_hook(_reread_counters)

    @classmethod
    def from_config(cls, c: ReplayBufferConfig, ctx) -> "ReplayBuffer":
        shape = ctx.need_event_shape("generator 'replay_buffer'")
        check_fits("$.generator.size", tensor_bytes(c.size, *shape), device=ctx.device,
                   what=f"{c.size:,} stored samples of shape {tuple(shape)}")
        return cls(shape, c.size, c.reinit, _noise_from(c, shape, ctx), ctx.device, c.replacement)

    def sample(self, n, *, rng, cond=None, data=None):
        fresh = self.noise.sample(n, rng=rng, cond=cond)
        if self._count == 0:
            return fresh
        if self.replacement or n > self._count:
            idx = torch.randint(0, self._count, (n,), generator=rng, device=self.x.device)
        elif n == self._count:  # every chain, oldest first: the order update wrote them in
            idx = (self._ptr + torch.arange(n, device=self.x.device)) % n
        else:
            idx = torch.randperm(self._count, generator=rng, device=self.x.device)[:n]
        keep = torch.rand(n, generator=rng, device=self.x.device) >= self.reinit
        keep = keep.view(n, *([1] * (fresh.dim() - 1)))
        return torch.where(keep, self.x[idx], fresh)

    def update(self, x: Tensor) -> None:
        x = x.detach()[-self.size:]
        n = len(x)
        pos = (self._ptr + torch.arange(n, device=self.x.device)) % self.size
        self.x[pos] = x.to(self.x.dtype)
        self._ptr, self._count = (self._ptr + n) % self.size, min(self._count + n, self.size)
        self.ptr.fill_(self._ptr)
        self.count.fill_(self._count)

    def fresh(self, n, *, rng, cond=None):
        return self.noise.sample(n, rng=rng, cond=cond)


def _reread_counters(buffer: ReplayBuffer, _incompatible) -> None:
    buffer._count, buffer._ptr = int(buffer.count), int(buffer.ptr)


@attrs.frozen
class DataInitConfig:
    """Contrastive divergence: chains start at the data batch (plus optional noise)."""

    noise_std: float = cfg.non_negative("std of Gaussian noise added to the data", default=0.0)
    low: float = attrs.field(default=-1.0, validator=below_high,
                             metadata={"doc": "fresh chains for evaluation: uniform lower bound"})
    high: float = cfg.doc("fresh chains for evaluation: uniform upper bound", default=1.0)


class DataInit(Generator):
    def __init__(self, event_shape, noise_std: float = 0.0, low: float = -1.0, high: float = 1.0, device=None):
        super().__init__()
        self.noise_std = noise_std
        self.noise = UniformNoise(event_shape, low, high, device)

    @classmethod
    def from_config(cls, c: DataInitConfig, ctx) -> "DataInit":
        return cls(ctx.need_event_shape("generator 'data'"), c.noise_std, c.low, c.high, ctx.device)

    def sample(self, n, *, rng, cond=None, data=None):
        if data is None:
            raise ValueError("generator 'data' (contrastive divergence) needs the data batch")
        x = data[:n].detach().clone()
        if self.noise_std > 0:
            x.add_(torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype), alpha=self.noise_std)
        return x

    def fresh(self, n, *, rng, cond=None):
        return self.noise.sample(n, rng=rng)
