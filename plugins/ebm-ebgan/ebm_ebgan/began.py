"""BEGAN (Berthelot, Schumm & Metz 2017): boundary equilibrium by a proportional controller.

With L(·) the batch mean of the energy (the autoencoder's mean absolute error in the paper):

    L_D = L(x) − k_t · L(G(z)),    L_G = L(G(z)),
    k_{t+1} = clip(k_t + λ_k · (γ · L(x) − L(G(z))), 0, 1).

k_t decides how hard D pushes the samples' energies up: it grows while the samples are
reconstructed better than γ times the data and shrinks otherwise, holding
E[L(G(z))] = γ · E[L(x)] (γ, the diversity ratio: lower means sharper, less varied
samples). k_t is a registered buffer, so it is checkpointed and a resumed run goes on
with it. Reported every step: ``began/k`` (the k_t this step used) and
``began/convergence``, M_global = L(x) + |γ · L(x) − L(G(z))|, which the paper shows
falling as the samples improve. The k update uses the step's own batch and latents (the
paper draws separate latents for G; the difference is one draw of noise).
"""

from __future__ import annotations

import attrs
import torch

from ebm_ebgan.objectives import AutoencoderGAN
from ebmcore import Batch, Energy, LatentGenerator
from ebmcore import config as cfg


@attrs.frozen
class BEGANConfig:
    """BEGAN (Berthelot et al. 2017): L_D = L(x) − k_t·L(G(z)), k_t held at equilibrium."""

    gamma: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.le(1)],
                               metadata={"doc": "γ, the diversity ratio E[L(G(z))] / E[L(x)] held "
                                                "(the paper: 0.3 to 0.7; 0.5 in its figures)"})
    lambda_k: float = cfg.non_negative("λ_k, the gain of k_t's update (the paper: 0.001)", default=0.001)
    k_init: float = cfg.fraction("k_0 (the paper: 0)", default=0.0)


class BEGAN(AutoencoderGAN):
    """``began``."""

    name = "began"

    def __init__(self, energy: Energy, generator: LatentGenerator, *, gamma: float = 0.5, lambda_k: float = 0.001,
                 k_init: float = 0.0):
        super().__init__(energy, generator)
        self.gamma, self.lambda_k = gamma, lambda_k
        self.register_buffer("k", torch.tensor(float(k_init)))

    @classmethod
    def from_config(cls, c: BEGANConfig, ctx) -> BEGAN:
        return cls(*cls.players(ctx), gamma=c.gamma, lambda_k=c.lambda_k, k_init=c.k_init)

    def balance(self, l_real: torch.Tensor, l_fake: torch.Tensor) -> torch.Tensor:
        """γ · L(x) − L(G(z)), detached: k's error signal."""
        return (self.gamma * l_real - l_fake).detach()

    def update_k(self, balance: torch.Tensor) -> None:
        """k ← clip(k + λ_k · balance, 0, 1), in place (the buffer)."""
        self.k.copy_((self.k + self.lambda_k * balance).clamp(0.0, 1.0))

    def loss(self, batch: Batch, *, rng):
        e_real, e_fake = self.energies(batch.x, rng)
        l_real, l_fake = e_real.mean(), e_fake.mean()
        k = self.k.clone()  # the loss keeps this step's k; the buffer moves on below
        balance = self.balance(l_real, l_fake)
        self.update_k(balance)
        metrics = {**self.energy_metrics(e_real, e_fake), "began/k": k,
                   "began/convergence": l_real.detach() + balance.abs()}
        return {"energy": l_real - k * l_fake, "generator": l_fake}, metrics
