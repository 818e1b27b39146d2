"""Autoencoder-energy GANs as energy-based models: what EBGAN, BEGAN and MAGAN share, and EBGAN.

The energy D (the reconstruction error of :mod:`ebm_ebgan.autoencoder`, or any energy that
is low on data and non-negative) and a trainable generator G (an :class:`ebmcore.LatentGenerator`,
e.g. ebm-coop's ``deconv``) are two players, each with its own parameter group and
optimizer: D is pushed down on data and up on G's samples, G moves its samples to where D
is low. The runner computes each group's gradient of its own loss only, so one energy pass
over data and samples serves both losses. The model's samples are G(z), z ~ N(0, I).

EBGAN (Zhao, Mathieu & LeCun 2017):

    L_D = D(x) + [m − D(G(z))]⁺,    L_G = D(G(z)) + λ_PT · PT(S),

with S the encoder codes of the generated batch and PT the pull-away term (:func:`pull_away`),
which pushes the codes of one batch apart to discourage mode collapse.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ebm_ebgan.autoencoder import AutoencoderEnergy
from ebmcore import Batch, Condition, EbmError, Energy, LatentGenerator, Objective
from ebmcore import config as cfg


def pull_away(codes: Tensor) -> Tensor:
    """PT(S) = 1/(N(N − 1)) · Σ_{i≠j} (S_iᵀS_j / (‖S_i‖‖S_j‖))², the mean squared cosine
    similarity of distinct codes of a batch (EBGAN, eq. 6); 0 for orthogonal codes, 1 when
    all are parallel."""
    s = F.normalize(codes.flatten(1), dim=1)
    n = len(s)
    cos2 = (s @ s.T).pow(2)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


def hinge(e_fake: Tensor, margin: Tensor | float) -> Tensor:
    """[m − D(G(z))]⁺, the batch mean: D pushes a sample's energy up only while it is below m
    (EBGAN's and MAGAN's game)."""
    return F.relu(margin - e_fake).mean()


class AutoencoderGAN(Objective):
    """Two players, D (the energy) and G (a latent generator); subclasses give the losses."""

    name: ClassVar[str]

    def __init__(self, energy: Energy, generator: LatentGenerator):
        super().__init__()
        if not isinstance(generator, LatentGenerator):
            raise EbmError(f"objective '{self.name}' needs a trainable generator with a latent space "
                           f"(an ebmcore.LatentGenerator such as ebm-coop's 'deconv' or 'mlp'), "
                           f"got {type(generator).__name__}")
        if generator.condition is not Condition.NONE or energy.condition is not Condition.NONE:
            raise EbmError(f"objective '{self.name}' learns an unconditional model: the generator is conditioned "
                           f"on '{generator.condition.value}' and the energy on '{energy.condition.value}'")
        self.energy, self.generator = energy, generator

    @classmethod
    def players(cls, ctx) -> tuple[Energy, LatentGenerator]:
        """The recipe's energy and generator (checked by ``__init__``)."""
        who = f"objective '{cls.name}'"
        return ctx.require("energy", who), ctx.require("generator", who)

    def param_groups(self):
        return {"energy": self.energy, "generator": self.generator}

    def fakes(self, n: int, rng: torch.Generator) -> Tensor:
        """G(z) for ``n`` fresh latents, with the generator's graph."""
        return self.generator.decode(self.generator.latent(n, rng))

    def energies(self, x: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """(D(x), D(G(z))) per example, from one energy pass over data and samples."""
        e = self.energy(torch.cat([x, self.fakes(len(x), rng)]))
        return e[:len(x)], e[len(x):]

    @staticmethod
    def energy_metrics(e_real: Tensor, e_fake: Tensor) -> dict[str, Tensor]:
        return {"energy/data": e_real.mean().detach(), "energy/sample": e_fake.mean().detach()}

    def sample(self, n, *, rng, cond=None):
        if cond is not None:
            raise EbmError(f"objective '{self.name}' learns an unconditional model: it takes no condition")
        return self.generator.sample(n, rng=rng)


@attrs.frozen
class EBGANConfig:
    """EBGAN (Zhao et al. 2017): hinge loss with a fixed margin, pull-away term for G."""

    margin: float = cfg.positive("m of [m − D(G(z))]⁺: D pushes samples' energies up only while they are below m",
                                 default=0.5)
    pt_weight: float = cfg.non_negative("λ_PT, weight of the pull-away term on the generated batch's codes "
                                        "(the paper: 0.1)", default=0.1)


class EBGAN(AutoencoderGAN):
    """``ebgan``: needs the ``autoencoder`` energy, whose codes the pull-away term uses."""

    name = "ebgan"

    def __init__(self, energy: Energy, generator: LatentGenerator, *, margin: float = 0.5, pt_weight: float = 0.1):
        if not isinstance(energy, AutoencoderEnergy):
            raise EbmError(f"objective 'ebgan' needs energy 'autoencoder' (its pull-away term uses the encoder's "
                           f"codes), got {type(energy).__name__}")
        super().__init__(energy, generator)
        self.margin, self.pt_weight = margin, pt_weight

    @classmethod
    def from_config(cls, c: EBGANConfig, ctx) -> EBGAN:
        return cls(*cls.players(ctx), margin=c.margin, pt_weight=c.pt_weight)

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        n = len(x)
        e, codes = self.energy.energy_and_code(torch.cat([x, self.fakes(n, rng)]))
        e_real, e_fake = e[:n], e[n:]
        pt = pull_away(codes[n:])
        metrics = {**self.energy_metrics(e_real, e_fake), "ebgan/pull_away": pt.detach()}
        return {"energy": e_real.mean() + hinge(e_fake, self.margin),
                "generator": e_fake.mean() + self.pt_weight * pt}, metrics
