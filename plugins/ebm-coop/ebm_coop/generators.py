"""Trainable generators x = g(z, cond) + ε, z ~ N(0, I), with an optional encoder q(z | x, cond).

They are :class:`ebmcore.LatentGenerator` s: ``sample`` proposes g(z) (detached), so any
objective can start chains from them, and cooperative and latent-variable objectives use
``latent``/``decode``/``encode`` with gradients. ``sigma`` is the std of ε: the reconstruction term ‖x − g(z)‖²/(2σ²) of the
generator's loss and of latent inference is weighted by it.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebm_coop.networks import (
    ConvEncoder,
    DeconvDecoder,
    MLPDecoder,
    MLPEncoder,
    UNetDecoder,
)
from ebmcore import Condition, LatentGenerator
from ebmcore import config as cfg


def _sigma() -> object:
    return cfg.positive("σ of x = g(z) + ε: the reconstruction ‖x − g(z)‖²/(2σ²) is weighted by it", default=0.3)


def _label_condition() -> object:
    return cfg.doc("'label': g(z, y) and q(z | x, y) for class labels y", default="none")


def _encoder() -> object:
    return cfg.doc("also build an inference network q(z | x): the VAE that objective 'coop_vae' needs",
                   default=False)


class DecoderGenerator(LatentGenerator):
    """A decoder from N(0, I) latents; the encoder is None unless built with one."""

    def __init__(self, decoder: nn.Module, latent_dim: int, sigma: float,
                 encoder: nn.Module | None = None, condition: Condition = Condition.NONE, device=None):
        super().__init__()
        self.decoder, self.encoder = decoder, encoder
        self.latent_dim, self.sigma, self.condition = latent_dim, sigma, condition
        self.can_encode = encoder is not None
        self.device = torch.device(device or "cpu")

    def latent(self, n: int, rng: torch.Generator) -> Tensor:
        return torch.randn((n, self.latent_dim), generator=rng, device=self.device)

    def decode(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.decoder(z, cond)

    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z | x, cond)."""
        if self.encoder is None:
            raise ValueError("this generator has no encoder: build it with encoder = true")
        return self.encoder(x, cond)


def _label_classes(condition: str, ctx, who: str) -> int | None:
    if condition != "label":
        return None
    if not ctx.num_classes:
        raise ValueError(f"{who} with condition = 'label' needs data with classes (num_classes)")
    return ctx.num_classes


@attrs.frozen
class MLPGeneratorConfig:
    """An MLP generator x = g(z) (+ ε) for vector data such as 2-D points."""

    latent_dim: int = cfg.positive("dimension of z", default=8)
    hidden: int = cfg.positive("units per hidden layer", default=128)
    layers: int = cfg.positive("hidden layers (decoder and encoder each)", default=2)
    sigma: float = _sigma()
    encoder: bool = _encoder()
    condition: Literal["none", "label"] = _label_condition()


class MLPGenerator(DecoderGenerator):
    @classmethod
    def from_config(cls, c: MLPGeneratorConfig, ctx) -> "MLPGenerator":
        who = "generator 'mlp'"
        shape, k = ctx.need_event_shape(who), _label_classes(c.condition, ctx, who)
        encoder = MLPEncoder(c.latent_dim, shape, c.hidden, c.layers, k) if c.encoder else None
        return cls(MLPDecoder(c.latent_dim, shape, c.hidden, c.layers, k), c.latent_dim, c.sigma, encoder,
                   Condition(c.condition), ctx.device)


@attrs.frozen
class DeconvGeneratorConfig:
    """A DCGAN-style deconvolutional generator for images (CoopNets, seed 002's decoder)."""

    latent_dim: int = cfg.positive("dimension of z (seed 002: 100)", default=100)
    channels: int = cfg.positive("channels before the output layer (×2, ×4 further down)", default=64)
    sigma: float = _sigma()
    encoder: bool = _encoder()
    condition: Literal["none", "label"] = _label_condition()


class DeconvGenerator(DecoderGenerator):
    @classmethod
    def from_config(cls, c: DeconvGeneratorConfig, ctx) -> "DeconvGenerator":
        who = "generator 'deconv'"
        shape, k = ctx.need_event_shape(who), _label_classes(c.condition, ctx, who)
        encoder = ConvEncoder(c.latent_dim, shape, c.channels, k) if c.encoder else None
        return cls(DeconvDecoder(c.latent_dim, shape, c.channels, k), c.latent_dim, c.sigma, encoder,
                   Condition(c.condition), ctx.device)


@attrs.frozen
class UNetGeneratorConfig:
    """A U-Net completion generator x = g(z, observed part of x) (seed 002, after pix2pix)."""

    latent_dim: int = cfg.positive("dimension of z, joined at the bottleneck", default=32)
    channels: int = cfg.positive("channels of the first down-sampling (×2 at the bottleneck)", default=64)
    sigma: float = _sigma()
    encoder: bool = _encoder()


class UNetGenerator(DecoderGenerator):
    @classmethod
    def from_config(cls, c: UNetGeneratorConfig, ctx) -> "UNetGenerator":
        shape = ctx.need_event_shape("generator 'unet'")
        encoder = ConvEncoder(c.latent_dim, shape, c.channels, cond_channels=shape[0] + 1) if c.encoder else None
        return cls(UNetDecoder(c.latent_dim, shape, c.channels), c.latent_dim, c.sigma, encoder,
                   Condition.COMPLETION, ctx.device)
