"""Energies of the latent prior p(z) ∝ exp(−E(z)), E(z) = f(z) + ‖z‖²/2.

- ``latent_mlp``: the latent-space EBM prior of Pang et al. 2020, an exponential tilting
  exp(−f_α(z)) of N(0, I) with f_α an MLP (the registry's energy 'mlp', from ebm-toy, with
  a unit Gaussian reference, whose ‖z‖²/2 is exactly the N(0, I) base);
- ``latent_gaussian``: f = 0, the plain N(0, I) prior of a generator (ABP; nothing to learn).

They score latents z, not data: ``latent_dim`` must equal the generator's (the objective
checks it), and an input of another width is refused with the dimension it expected.
Being the recipe's [energy], the prior is what the runner's end-of-run figure receives:
for 2-D toy data with latent_dim = 2 the "density" panel of density.png is the learned
prior over z drawn on the data's axes, not a density over x.
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import Tensor

from ebmcore import Energy
from ebmcore import config as cfg


def _check_width(z: Tensor, latent_dim: int, who: str) -> None:
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"energy '{who}' scores latents of shape (batch, {latent_dim}), got {tuple(z.shape)}: "
                         "it is the prior of a latent-variable model, not an energy over the data")


@attrs.frozen
class LatentMLPConfig:
    """The latent-space EBM prior (Pang et al. 2020): E(z) = f_α(z) + ‖z‖²/2, f_α an MLP."""

    latent_dim: int = cfg.positive("dimension of z: must equal the generator's latent_dim", default=8)
    hidden: tuple[int, ...] = attrs.field(default=(200, 200), validator=cfg.positive_widths,
                                          metadata={"doc": "hidden layer widths of f_α (Pang et al.: 200, 200)"})
    activation: Literal["silu", "relu", "elu", "tanh", "leaky_relu", "softplus"] = cfg.doc(
        "activation between layers (Pang et al.: leaky ReLU 0.2)", default="leaky_relu")


class LatentPrior(Energy):
    """An energy over latents of dimension ``latent_dim`` (not over the data)."""

    over_data = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim


class LatentMLPPrior(LatentPrior):
    """E(z) = f_α(z) + ‖z‖²/2."""

    def __init__(self, latent_dim: int, tilt: Energy):
        super().__init__(latent_dim)
        self.tilt = tilt

    @classmethod
    def from_config(cls, c: LatentMLPConfig, ctx) -> LatentMLPPrior:
        # through the context's registry, as plugins do not import each other (ebm-toy's 'mlp')
        tilt = attrs.evolve(ctx, event_shape=(c.latent_dim,)).build(
            "energy", "mlp", hidden=list(c.hidden), activation=c.activation, reference_std=1.0)
        return cls(c.latent_dim, tilt)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        _check_width(z, self.latent_dim, "latent_mlp")
        return self.tilt(z)


@attrs.frozen
class LatentGaussianConfig:
    """The N(0, I) prior of a plain generator (ABP, Han et al. 2017): E(z) = ‖z‖²/2."""

    latent_dim: int = cfg.positive("dimension of z: must equal the generator's latent_dim", default=8)


class GaussianPrior(LatentPrior):
    """E(z) = ‖z‖²/2; no parameters."""

    @classmethod
    def from_config(cls, c: LatentGaussianConfig, ctx=None) -> GaussianPrior:
        return cls(c.latent_dim)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        _check_width(z, self.latent_dim, "latent_gaussian")
        return z.pow(2).sum(1) / 2
