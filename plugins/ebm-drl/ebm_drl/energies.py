"""Energies E(y, t) of one network shared across noise levels, told the level t.

``cond`` is the level of each example (integers, shape ``(batch,)``); without it, level 0
(the data's), so a plot of exp(−E(x)) or a task that knows nothing of levels sees the
model of the data. The level enters every hidden layer as a learned bias computed from a
sinusoidal embedding of t (the time embedding of DDPM and Gao et al.). Both energies say
``condition = Condition.LEVEL``, which objective ``drl`` checks. ``level_mlp`` can also see random
Fourier features of its input (``fourier``): on eight Gaussians the plain MLP learned the
low levels' radial structure but not the angular one (samples on a ring).
"""

import math
from itertools import pairwise

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Condition, Energy
from ebmcore import config as cfg


@attrs.frozen
class LevelMLPConfig:
    """MLP energy E(x, t) of vectors at noise level t (diffusion recovery likelihood)."""

    hidden: tuple[int, ...] = attrs.field(default=(128, 128), validator=cfg.positive_widths,
                                          metadata={"doc": "hidden layer widths"})
    embedding: int = cfg.positive("size of the sinusoidal level embedding", default=32)
    fourier: int = cfg.non_negative("random Fourier features of the input (sin and cos of fourier "
                                    "projections, Tancik et al. 2020) fed with it to the first layer; "
                                    "0: the input alone", default=0)
    fourier_scale: float = cfg.positive("std of the random Fourier frequencies (cycles per unit of input)",
                                        default=1.0)


@attrs.frozen
class LevelCNNConfig:
    """ConvNet energy E(x, t) of images at noise level t: stride-2 Swish convolutions, a linear head."""

    channels: tuple[int, ...] = attrs.field(default=(32, 64, 64), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of each 3×3 stride-2 convolution"})
    embedding: int = cfg.positive("size of the sinusoidal level embedding", default=32)


def sinusoidal(levels: Tensor, dim: int) -> Tensor:
    """The transformer/DDPM embedding of integer levels: (batch,) → (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=levels.device) / max(half - 1, 1))
    angles = levels.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos(), angles.new_zeros(len(levels), dim - 2 * half)], dim=1)


class _LevelBiases(nn.Module):
    """One bias vector per hidden layer, computed from the level's embedding."""

    def __init__(self, dim: int, widths: tuple[int, ...]):
        super().__init__()
        self.dim = dim
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.SiLU())
        self.heads = nn.ModuleList(nn.Linear(dim, w) for w in widths)

    def forward(self, levels: Tensor) -> list[Tensor]:
        h = self.trunk(sinusoidal(levels, self.dim))
        return [head(h) for head in self.heads]


def _levels(x: Tensor, cond: Tensor | None) -> Tensor:
    return torch.zeros(len(x), dtype=torch.long, device=x.device) if cond is None else cond


class LevelMLP(Energy):
    condition = Condition.LEVEL

    def __init__(self, in_features: int, hidden=(128, 128), embedding: int = 32, fourier: int = 0,
                 fourier_scale: float = 1.0):
        super().__init__()
        # fixed random frequencies: a smooth MLP of raw 2-D inputs learns the low levels'
        # fine structure (eight modes around a ring) far more slowly (spectral bias)
        self.register_buffer("freqs", 2 * math.pi * fourier_scale * torch.randn(in_features, fourier))
        widths = [in_features + 2 * fourier, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.biases = _LevelBiases(embedding, tuple(hidden))
        self.out = nn.Linear(widths[-1], 1)

    @classmethod
    def from_config(cls, c: LevelMLPConfig, ctx) -> "LevelMLP":
        return cls(math.prod(ctx.need_event_shape("energy 'level_mlp'")), c.hidden, c.embedding, c.fourier,
                   c.fourier_scale)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.freqs.shape[1]:
            proj = h @ self.freqs
            h = torch.cat([h, proj.sin(), proj.cos()], dim=1)
        for layer, bias in zip(self.layers, self.biases(_levels(x, cond))):
            h = nn.functional.silu(layer(h) + bias)
        return self.out(h).squeeze(-1)


class LevelCNN(Energy):
    condition = Condition.LEVEL

    def __init__(self, shape: tuple[int, int, int], channels=(32, 64, 64), embedding: int = 32):
        super().__init__()
        widths = [shape[0], *channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise(widths))
        self.biases = _LevelBiases(embedding, tuple(channels))
        with torch.no_grad():
            flat = self._features(torch.zeros(1, *shape), torch.zeros(1, dtype=torch.long)).shape[1]
        self.head = nn.Linear(flat, 1)

    @classmethod
    def from_config(cls, c: LevelCNNConfig, ctx) -> "LevelCNN":
        shape = ctx.need_event_shape("energy 'level_cnn'")
        if len(shape) != 3:
            raise ValueError(f"energy 'level_cnn' needs images (channels, height, width), the data are {shape}")
        return cls(tuple(shape), c.channels, c.embedding)

    def _features(self, x: Tensor, levels: Tensor) -> Tensor:
        h = x
        for conv, bias in zip(self.convs, self.biases(levels)):
            h = nn.functional.silu(conv(h) + bias[:, :, None, None])
        return h.flatten(1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.head(self._features(x, _levels(x, cond))).squeeze(-1)
