"""A two-turn spiral in [−3, 3]², scored and drawn by the kit (MMD² beside its yardsticks)."""

import attrs
import torch

from ebmcore import Batch, Data
from ebmcore.config import positive
from ebmcore.kit.metrics import Yardsticks, beside, mmd2
from ebmcore.kit.pictures import scatter_png


@attrs.frozen
class SpiralConfig:
    batch_size: int = positive("examples per step", default=256)


class Spiral(Data):
    def __init__(self, c: SpiralConfig):
        g, self.batch_size, self.event_shape = torch.Generator().manual_seed(0), c.batch_size, (2,)
        t = 3 * torch.pi * torch.rand(14000, generator=g).sqrt()  # training, held-out and floor sets
        x = torch.stack([t * t.cos(), t * t.sin()], 1) / 3.5 + 0.08 * torch.randn(14000, 2, generator=g)
        self.train, self.test, floor = x.split([10000, 2000, 2000])
        self.sticks = Yardsticks(lambda x: mmd2(x, self.test, 0.5), train=self.train, heldout=floor,
                                 noise=lambda n, g: 6 * torch.rand(n, 2, generator=g) - 3)

    def dataset(self): return Batch(self.train)
    def heldout(self): return Batch(self.test)
    def save_samples(self, x, path): scatter_png(x, path, bounds=(-3, 3))
    def evaluate(self, x): return beside("mmd2", mmd2(x, self.test, 0.5), self.sticks(len(x)))
