"""The 2-D toy modality: a fixed training set, a held-out set, pictures and MMD²."""

from pathlib import Path
from typing import Literal

import attrs
import torch

from ebmcore import Batch, Data
from ebmcore import config as cfg
from ebm_toy.datasets import TOY_DATASETS, data_bounds, sample_toy
from ebm_toy.metrics import gaussian_fit_baseline, mmd2
from ebm_toy.plots import density_png, scatter_png

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

    Scores: unbiased MMD² with a Gaussian kernel, bandwidth 0.5 (``mmd2``) and 0.1
    (``mmd2/h0.1``), between the samples and the held-out set.
    """

    event_shape = (2,)

    def __init__(self, name: str = "eight_gaussians", batch_size: int = 256, n_train: int = 20000,
                 n_test: int = 2000, seed: int = 0):
        rng = torch.Generator().manual_seed(seed)
        self.name, self.batch_size = name, batch_size
        self.train = sample_toy(name, n_train, rng=rng)
        self.test = sample_toy(name, n_test, rng=rng)
        self.bounds = data_bounds(name)

    @classmethod
    def from_config(cls, c: ToyDataConfig, ctx=None) -> "ToyData":
        return cls(c.name, c.batch_size, c.n_train, c.n_test, c.seed)

    def dataset(self) -> Batch:
        return Batch(self.train)

    def save_samples(self, x, path: Path) -> None:
        scatter_png(x, path, bounds=self.bounds, title=f"{self.name}: {len(x)} samples")

    def evaluate(self, samples) -> dict[str, float]:
        return {"mmd2": mmd2(samples, self.test, 0.5), "mmd2/h0.1": mmd2(samples, self.test, 0.1)}

    def baseline(self, n: int = 2000, seed: int = 0) -> dict[str, float]:
        """The scores of a single Gaussian fitted to the training set: the bar to beat."""
        g = gaussian_fit_baseline(self.train, n, rng=torch.Generator().manual_seed(seed))
        return self.evaluate(g)

    def report(self, out_dir: Path, samples, energy) -> None:
        if not getattr(energy, "over_data", True):  # a latent prior: no density on the data's axes
            density_png(self.test, samples, None, Path(out_dir) / "density.png", bounds=self.bounds)
            return
        was_training = energy.training
        energy.eval()
        device = next((p.device for p in energy.parameters()), torch.device("cpu"))
        # the grid is built on the CPU; the energy may live on an accelerator
        density_png(self.test, samples, lambda x: energy(x.to(device)), Path(out_dir) / "density.png",
                    bounds=self.bounds)
        energy.train(was_training)
