"""The 2-D toy modality: a fixed training set, a held-out set, pictures and MMD²."""

from pathlib import Path
from typing import Literal

import attrs
import torch

from ebm_toy.datasets import TOY_DATASETS, data_bounds, sample_toy
from ebmcore import Batch, Data
from ebmcore import config as cfg
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.kit.metrics import Yardsticks, beside, mmd2
from ebmcore.kit.pictures import density_png, scatter_png

ToyName = Literal[TOY_DATASETS]  # type: ignore[valid-type]


@attrs.frozen
class ToyDataConfig:
    """2-D toy data (eight gaussians, two moons, rings, swiss roll, checkerboard, pinwheel)."""

    name: ToyName = cfg.doc(f"data set: {', '.join(TOY_DATASETS)}", default="eight_gaussians")
    batch_size: int = cfg.positive("examples per optimisation step", default=256)
    n_train: int = cfg.positive("size of the fixed training set", default=20000)
    n_test: int = cfg.positive("size of the held-out set used by MMD²", default=2000)
    seed: int = cfg.doc("seed that draws the data sets (fixed data, whatever the run seed)", default=0)


class ToyData(Data):
    """Fixed train and held-out sets drawn once from a toy distribution.

    Scores: unbiased MMD² with a Gaussian kernel, bandwidth 0.5 (``mmd2``, beside its
    yardsticks: a second held-out draw of the true distribution, uniform noise over the
    plot's square and a Gaussian fitted to the training set) and 0.1 (``mmd2/h0.1``),
    between the samples and the held-out set.
    """

    event_shape = (2,)

    def __init__(self, name: str = "eight_gaussians", batch_size: int = 256, n_train: int = 20000,
                 n_test: int = 2000, seed: int = 0):
        rng = torch.Generator().manual_seed(seed)
        self.name, self.batch_size = name, batch_size
        self.train = sample_toy(name, n_train, rng=rng)
        self.test = sample_toy(name, n_test, rng=rng)
        self.bounds = data_bounds(name)
        # the floor: another draw of the true distribution, scored against the held-out set
        floor = sample_toy(name, n_test, rng=rng)
        low, high = self.bounds
        self.yardsticks = Yardsticks(lambda x: mmd2(x, self.test, 0.5), train=self.train, heldout=floor,
                                     noise=lambda n, g: low + (high - low) * torch.rand((n, 2), generator=g),
                                     seed=seed)

    @classmethod
    def from_config(cls, c: ToyDataConfig, ctx=None) -> "ToyData":
        # drawing n points holds up to six float64 (n, 2) tensors at once (pinwheel, measured)
        check_fits("$.data.n_train", 6 * tensor_bytes(c.n_train, 2, itemsize=8),
                   what=f"drawing {c.n_train:,} points")
        # MMD² against the held-out set holds three float64 n_test × n_test kernel matrices
        check_fits("$.data.n_test", 3 * tensor_bytes(c.n_test, c.n_test, itemsize=8),
                   what=f"MMD² against {c.n_test:,} held-out points")
        return cls(c.name, c.batch_size, c.n_train, c.n_test, c.seed)

    def dataset(self) -> Batch:
        return Batch(self.train)

    def heldout(self) -> Batch:
        return Batch(self.test)

    def save_samples(self, x, path: Path) -> None:
        scatter_png(x, path, bounds=self.bounds, title=f"{self.name}: {len(x)} samples")

    def evaluate(self, samples) -> dict[str, float]:
        return {**beside("mmd2", mmd2(samples, self.test, 0.5), self.yardsticks(len(samples))),
                "mmd2/h0.1": mmd2(samples, self.test, 0.1)}

    def report(self, out_dir: Path, samples, energy) -> list[Path]:
        path = Path(out_dir) / "density.png"
        if not energy.over_data:  # a latent prior: no density on the data's axes
            density_png(self.test, samples, None, path, bounds=self.bounds)
            return [path]
        was_training = energy.training
        energy.eval()
        device = next((p.device for p in energy.parameters()), torch.device("cpu"))
        # the grid is built on the CPU; the energy may live on an accelerator
        density_png(self.test, samples, lambda x: energy(x.to(device)), path, bounds=self.bounds)
        energy.train(was_training)
        return [path]
