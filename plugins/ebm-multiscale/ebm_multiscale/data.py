"""A synthetic image modality with multi-scale structure: oriented sinusoidal stripes.

Each image is cos(2π·f·(x·cosθ + y·sinθ) + φ) on a size×size grid in [−1, 1], with a
random orientation θ, phase φ and a frequency f of 1–3 cycles per image: coarse grids see
the mean and the orientation, fine grids the stripes. Small and exact, for testing
pyramid samplers and objectives without a download.
"""

import math
from pathlib import Path

import attrs
import torch

from ebmcore import Batch, Data
from ebmcore import config as cfg
from ebmcore.kit.pictures import image_grid_png


@attrs.frozen
class StripesConfig:
    """Synthetic oriented-stripe images in [−1, 1] (for multi-scale models)."""

    size: int = cfg.positive("image size (the finest resolution)", default=16)
    batch_size: int = cfg.positive("examples per optimisation step", default=64)
    n_train: int = cfg.positive("number of training images", default=2000)
    seed: int = cfg.doc("seed that draws the images", default=0)


def stripes(n: int, size: int, *, rng: torch.Generator) -> torch.Tensor:
    theta = torch.rand(n, generator=rng) * math.pi
    phase = torch.rand(n, generator=rng) * 2 * math.pi
    freq = 1 + 2 * torch.rand(n, generator=rng)
    grid = torch.linspace(-0.5, 0.5, size)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    proj = x[None] * theta.cos()[:, None, None] + y[None] * theta.sin()[:, None, None]
    return torch.cos(2 * math.pi * freq[:, None, None] * proj + phase[:, None, None]).unsqueeze(1)


class Stripes(Data):
    def __init__(self, size: int = 16, batch_size: int = 64, n_train: int = 2000, seed: int = 0):
        self.event_shape = (1, size, size)
        self.batch_size = batch_size
        self.train = stripes(n_train, size, rng=torch.Generator().manual_seed(seed))

    @classmethod
    def from_config(cls, c: StripesConfig, ctx=None) -> "Stripes":
        return cls(c.size, c.batch_size, c.n_train, c.seed)

    def dataset(self) -> Batch:
        return Batch(self.train)

    def save_samples(self, x, path: Path) -> None:
        image_grid_png(x, Path(path))
