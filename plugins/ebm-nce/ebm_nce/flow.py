"""A small RealNVP (Dinh et al. 2017) over flattened x: the trained noise of FCE.

x = loc + scale ⊙ f_K ∘ … ∘ f_1(z), z ~ N(0, I). Each f_k is an affine coupling layer: the
coordinates where the mask is 1 pass unchanged and set, through an MLP, the log-scale s and
shift t of the others, u' = u ⊙ exp(s) + t. Masks alternate, so every coordinate is moved by
every second layer. The Jacobian is triangular: log|det| = Σ s, exact in both directions.

``loc`` and ``scale`` are a fixed per-coordinate standardisation (the training set's mean
and std at build time), and each coupling's last layer starts at zero, so the untrained
flow is the diagonal Gaussian fitted to the data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _mlp(dim: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip((dim, *hidden), hidden):
        layers += [nn.Linear(a, b), nn.SiLU()]
    last = nn.Linear(hidden[-1], out)
    nn.init.zeros_(last.weight)  # starts as the identity map
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AffineCoupling(nn.Module):
    """u' = m ⊙ u + (1 − m) ⊙ (u ⊙ exp(s(m ⊙ u)) + t(m ⊙ u))."""

    def __init__(self, mask: Tensor, hidden: tuple[int, ...]):
        super().__init__()
        dim = len(mask)
        self.register_buffer("mask", mask)
        self.net = _mlp(dim, hidden, 2 * dim)
        # s = scale · tanh(raw): bounded log-scales keep exp(s) from overflowing early on
        self.scale = nn.Parameter(torch.ones(dim))

    def _shift_and_log_scale(self, u: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self.net(u * self.mask).chunk(2, dim=1)
        free = 1 - self.mask
        return t * free, self.scale * torch.tanh(raw_s) * free

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(f(u), log|det ∂f/∂u|) per example."""
        t, s = self._shift_and_log_scale(u)
        return u * s.exp() + t, s.sum(1)

    def inverse(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(f⁻¹(v), log|det ∂f⁻¹/∂v|) per example (the masked part of v is that of u)."""
        t, s = self._shift_and_log_scale(v)
        return (v - t) * (-s).exp(), -s.sum(1)


class RealNVP(nn.Module):
    """Exact sampling with log-density (``sample``) and exact ``log_prob``."""

    def __init__(self, event_shape, layers: int = 8, hidden: tuple[int, ...] = (64, 64),
                 loc: Tensor | None = None, scale: Tensor | None = None):
        super().__init__()
        self.event_shape = tuple(event_shape)
        dim = math.prod(self.event_shape)
        parity = torch.arange(dim) % 2
        self.couplings = nn.ModuleList(
            AffineCoupling(((parity + k) % 2).float(), tuple(hidden)) for k in range(layers))
        self.register_buffer("loc", torch.zeros(dim) if loc is None else loc.detach().flatten().clone())
        self.register_buffer("std", torch.ones(dim) if scale is None else scale.detach().flatten().clone())

    @classmethod
    def fitted(cls, x: Tensor, layers: int, hidden: tuple[int, ...], min_std: float) -> RealNVP:
        """A flow whose standardisation is the mean and std (at least ``min_std``) of ``x``."""
        flat = x.detach().flatten(1)
        return cls(x.shape[1:], layers, hidden, flat.mean(0), flat.std(0).clamp_min(min_std))

    def _base_log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def sample(self, n: int, *, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x, log q(x)): differentiable in the flow's parameters (reparameterised)."""
        z = torch.randn((n, len(self.loc)), generator=rng, device=self.loc.device)
        log_q = self._base_log_prob(z)
        u = z
        for layer in self.couplings:
            u, log_det = layer(u)
            log_q = log_q - log_det
        x = self.loc + self.std * u
        return x.view(n, *self.event_shape), log_q - self.std.log().sum()

    def log_prob(self, x: Tensor) -> Tensor:
        """log q(x) per example, by inverting the flow."""
        u = (x.flatten(1) - self.loc) / self.std
        log_q = -self.std.log().sum().expand(len(u))
        for layer in reversed(self.couplings):
            u, log_det = layer.inverse(u)
            log_q = log_q + log_det
        return log_q + self._base_log_prob(u)
