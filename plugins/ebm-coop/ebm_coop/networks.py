"""Top-down networks x = g(z, cond) and bottom-up encoders q(z | x, cond).

- MLP: any event shape (flattened), e.g. 2-D points.
- Deconv: images whose side is a multiple of 4; z → a (4·ch)×(H/4)×(W/4) map → two 2×
  transposed convolutions with batch norm and ReLU (DCGAN style, as CoopNets) → tanh.
- U-Net: image completion; the condition (observed image + missing indicator) goes down two
  stride-2 convolutions, z joins at the bottleneck, and the way up sees the skips (as the
  U-Net of seed 002's completion model, after Isola et al. 2017).

A label condition enters as a one-hot vector appended to z (decoders) or to the features
(encoders).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def one_hot(cond: Tensor | None, num_classes: int | None) -> Tensor | None:
    if not num_classes:
        return None
    if cond is None:
        raise ValueError("a label-conditional network needs the labels (cond)")
    return F.one_hot(cond.long(), num_classes).float()


def _join(h: Tensor, label: Tensor | None) -> Tensor:
    return h if label is None else torch.cat([h, label.to(h.dtype)], dim=1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], hidden: int, layers: int,
                 num_classes: int | None = None, tanh: bool = False):
        super().__init__()
        self.event_shape, self.num_classes, self.tanh = tuple(event_shape), num_classes, tanh
        self.net = _mlp([latent_dim + (num_classes or 0), *[hidden] * layers, math.prod(event_shape)])

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        x = self.net(_join(z, one_hot(cond, self.num_classes))).view(-1, *self.event_shape)
        return torch.tanh(x) if self.tanh else x


class MLPEncoder(nn.Module):
    """(μ, log σ²) of q(z | x, cond)."""

    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], hidden: int, layers: int,
                 num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.net = _mlp([math.prod(event_shape) + (num_classes or 0), *[hidden] * layers, 2 * latent_dim])

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.net(_join(x.flatten(1), one_hot(cond, self.num_classes))).chunk(2, dim=1)


def _quarter(shape: tuple[int, ...], who: str) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(f"{who} needs images (C, H, W) with H and W multiples of 4, got {tuple(shape)}")
    return shape[0], shape[1] // 4, shape[2] // 4


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


class DeconvDecoder(nn.Module):
    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], channels: int,
                 num_classes: int | None = None):
        super().__init__()
        c, h4, w4 = _quarter(event_shape, "generator 'deconv'")
        self.num_classes, self.top = num_classes, (4 * channels, h4, w4)
        self.fc = nn.Sequential(nn.Linear(latent_dim + (num_classes or 0), 4 * channels * h4 * w4),
                                nn.BatchNorm1d(4 * channels * h4 * w4), nn.ReLU())
        self.up = nn.Sequential(_up(4 * channels, 2 * channels), _up(2 * channels, channels),
                                nn.Conv2d(channels, c, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.fc(_join(z, one_hot(cond, self.num_classes)))
        return self.up(h.view(-1, *self.top))


class ConvEncoder(nn.Module):
    """(μ, log σ²) of q(z | x, cond); ``cond_channels`` image channels of condition join x."""

    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], channels: int,
                 num_classes: int | None = None, cond_channels: int = 0):
        super().__init__()
        c, h4, w4 = _quarter(event_shape, "the encoder")
        self.num_classes, self.cond_channels = num_classes, cond_channels
        self.conv = nn.Sequential(_down(c + cond_channels, channels), _down(channels, 2 * channels))
        self.fc = nn.Linear(2 * channels * h4 * w4 + (num_classes or 0), 2 * latent_dim)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.cond_channels:
            x, label = torch.cat([x, cond.to(x.dtype)], dim=1), None
        else:
            label = one_hot(cond, self.num_classes)
        return self.fc(_join(self.conv(x).flatten(1), label)).chunk(2, dim=1)


class UNetDecoder(nn.Module):
    """x = g(z, cond) for completion: cond (C + 1 channels) → down ×2 → ⊕ z → up ×2 with skips."""

    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], channels: int):
        super().__init__()
        c, h4, w4 = _quarter(event_shape, "generator 'unet'")
        self.mid = (2 * channels, h4, w4)
        self.down1, self.down2 = _down(c + 1, channels), _down(channels, 2 * channels)
        size = 2 * channels * h4 * w4
        self.bottleneck = nn.Sequential(nn.Linear(size + latent_dim, size), nn.ReLU())
        self.up1, self.up2 = _up(4 * channels, channels), _up(2 * channels, channels)
        self.out = nn.Sequential(nn.Conv2d(channels + c + 1, c, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            raise ValueError("a completion generator needs its condition (the observed image and mask)")
        d1 = self.down1(cond)
        d2 = self.down2(d1)
        b = self.bottleneck(torch.cat([d2.flatten(1), z], dim=1)).view(-1, *self.mid)
        u1 = self.up1(torch.cat([b, d2], dim=1))
        u2 = self.up2(torch.cat([u1, d1], dim=1))
        return self.out(torch.cat([u2, cond], dim=1))
