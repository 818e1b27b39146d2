"""The autoencoder energy: E(x) = reconstruction error of a small convolutional autoencoder.

EBGAN, BEGAN and MAGAN all use an autoencoder as the discriminator and its reconstruction
error as the energy: low on the data (the autoencoder learns to reconstruct it), pushed up
on the generator's samples. As an :class:`ebmcore.Energy` it is an ordinary one, so every
sampler and task works on it too (Langevin from noise on a trained reconstruction error,
the ``ood`` task's energies).

The encoder is two stride-2 convolutions (LeakyReLU) and a linear map to the code h; the
decoder mirrors it with transposed convolutions and a linear output (reconstructions are
not squashed, so the error keeps its gradient at the edges of [−1, 1]). No batch norm:
E(x) must be a function of x alone, not of the batch it is evaluated in (a sampler moves
single chains; the objectives evaluate data and samples together).

``encode`` is declared here because EBGAN's pull-away term is computed on the codes of
the generated batch; :meth:`energy_and_code` gives both from one encoder pass.
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import Tensor, nn

from ebmcore import EbmError, Energy
from ebmcore import config as cfg

Norm = Literal["l2", "l1"]


@attrs.frozen
class AutoencoderConfig:
    """D(x) = mean reconstruction error of a conv autoencoder (EBGAN, BEGAN, MAGAN)."""

    channels: int = cfg.positive("channels of the first convolution (twice as many at the second)", default=32)
    code: int = cfg.positive("dimension of the code h between encoder and decoder", default=64)
    norm: Literal["l2", "l1"] = cfg.doc("per-example energy: 'l2' the mean squared error (EBGAN), 'l1' the mean absolute "
                         "error (BEGAN, MAGAN)", default="l2")


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise EbmError(f"energy 'autoencoder' needs images (C, H, W) with H and W multiples of 4, got {tuple(shape)}")
    return shape[0], shape[1] // 4, shape[2] // 4


class AutoencoderEnergy(Energy):
    """E(x) = mean over coordinates of |x − dec(enc(x))|^p, p = 2 (``l2``) or 1 (``l1``)."""

    def __init__(self, event_shape: tuple[int, ...], channels: int = 32, code: int = 64, norm: Norm = "l2"):
        super().__init__()
        c, h4, w4 = _image_shape(tuple(event_shape))
        self.norm, self.top = norm, (2 * channels, h4, w4)
        flat = 2 * channels * h4 * w4
        self.encoder = nn.Sequential(
            nn.Conv2d(c, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(flat, code))
        self.expand = nn.Sequential(nn.Linear(code, flat), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1))

    @classmethod
    def from_config(cls, c: AutoencoderConfig, ctx) -> AutoencoderEnergy:
        return cls(ctx.need_event_shape("energy 'autoencoder'"), c.channels, c.code, c.norm)

    def encode(self, x: Tensor) -> Tensor:
        """The code h = enc(x), ``(batch, code)``."""
        return self.encoder(x)

    def decode(self, h: Tensor) -> Tensor:
        """The reconstruction dec(h), shaped like x."""
        return self.decoder(self.expand(h).view(-1, *self.top))

    def energy_and_code(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(E(x), enc(x)) from one pass."""
        h = self.encode(x)
        error = (x - self.decode(h)).flatten(1)
        per_coordinate = error.pow(2) if self.norm == "l2" else error.abs()
        return per_coordinate.mean(1), h

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.energy_and_code(x)[0]
