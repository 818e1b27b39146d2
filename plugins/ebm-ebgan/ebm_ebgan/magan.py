"""MAGAN (Wang, Cully, Chang & Demiris 2017): EBGAN's hinge with a margin taken from the data.

The game is EBGAN's without the pull-away term, L_D = D(x) + [m − D(G(z))]⁺, L_G = D(G(z)),
but m is not a setting: it is estimated from the energies of real data and only ever
lowered. What is implemented (the paper's Algorithm 1 as two public implementations
write it; the paper counts epochs of the data, here an "epoch" is ``epoch_steps`` steps so
that a CPU-length run sees several):

1. warm-up, ``warmup_steps`` steps: D is trained as a plain autoencoder on data (L_D =
   D(x); G's loss is multiplied by 0, so G does not move); the paper pre-trains for two
   epochs;
2. at its end m is the mean real energy of the warm-up's last epoch (the paper: of its
   second pre-training epoch);
3. after each later epoch, with S_real and S_fake the sums of D(x) and D(G(z)) over the
   epoch's batches and E_real = S_real / (examples seen), m ← E_real when all of
   E_real < m, S_real < S_fake and S_fake(previous epoch) < S_fake hold — D separates
   data from samples, yet the samples' energies have not come down, so the margin that
   lets D push them up is tightened. The first epoch after the warm-up has no previous
   one and never lowers m (the implementations start the previous S_fake at +∞; here a
   count of epochs says whether there is one, as the divergence guard refuses an
   infinite buffer).

Everything is kept in registered buffers (the step, m, the epoch's sums, the previous
S_fake, the epochs played), so a checkpoint holds it and a resumed run continues the same epochs; it is
computed with tensor operations, without a host sync. Reported: ``magan/margin``.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ebm_ebgan.objectives import AutoencoderGAN, hinge
from ebmcore import Batch, Energy, LatentGenerator
from ebmcore import config as cfg


@attrs.frozen
class MAGANConfig:
    """MAGAN (Wang et al. 2017): the hinge margin set from, and lowered to, the data's energy."""

    warmup_steps: int = cfg.positive("steps training D alone as an autoencoder of the data before the margin is "
                                     "set (the paper: two epochs)", default=200)
    epoch_steps: int = cfg.positive("steps per epoch of the margin rule (the paper: one pass over the data, 469 "
                                    "steps of 128 on Fashion-MNIST)", default=200)


class MAGAN(AutoencoderGAN):
    """``magan``."""

    name = "magan"

    def __init__(self, energy: Energy, generator: LatentGenerator, *, warmup_steps: int = 200,
                 epoch_steps: int = 200):
        super().__init__(energy, generator)
        self.warmup_steps, self.epoch_steps = warmup_steps, epoch_steps
        for name in ("step", "epochs"):
            self.register_buffer(name, torch.tensor(0))
        for name in ("margin", "s_real", "s_fake", "seen", "s_fake_previous"):
            self.register_buffer(name, torch.tensor(0.0))

    @classmethod
    def from_config(cls, c: MAGANConfig, ctx) -> MAGAN:
        return cls(*cls.players(ctx), warmup_steps=c.warmup_steps, epoch_steps=c.epoch_steps)

    def end_of_step(self, e_real: Tensor, e_fake: Tensor) -> None:
        """Add the step's energies to the epoch's sums; at the end of the warm-up set m, at the
        end of a later epoch apply the margin rule; then start the next epoch's sums."""
        self.s_real += e_real.detach().sum()
        self.s_fake += e_fake.detach().sum()
        self.seen += len(e_real)
        self.step += 1
        after_warmup = self.step - self.warmup_steps
        warmup_ends = after_warmup == 0
        epoch_ends = (after_warmup > 0) & (after_warmup % self.epoch_steps == 0)
        e_real_mean = self.s_real / self.seen
        lower = epoch_ends & (e_real_mean < self.margin) & (self.s_real < self.s_fake) & (self.epochs > 0) & (
            self.s_fake_previous < self.s_fake)
        self.margin.copy_(torch.where(warmup_ends | lower, e_real_mean, self.margin))
        self.s_fake_previous.copy_(torch.where(epoch_ends, self.s_fake, self.s_fake_previous))
        self.epochs += epoch_ends.long()
        in_warmup_epoch_ends = (after_warmup < 0) & (self.step % self.epoch_steps == 0)
        restart = warmup_ends | epoch_ends | in_warmup_epoch_ends
        for total in (self.s_real, self.s_fake, self.seen):
            total.copy_(torch.where(restart, torch.zeros_like(total), total))

    def loss(self, batch: Batch, *, rng):
        e_real, e_fake = self.energies(batch.x, rng)
        playing = (self.step >= self.warmup_steps).to(e_real.dtype)  # 0 during the warm-up
        margin = self.margin.clone()  # this step's m; the buffer may move below
        d_loss, g_loss = e_real.mean() + playing * hinge(e_fake, margin), playing * e_fake.mean()
        self.end_of_step(e_real, e_fake)
        metrics = {**self.energy_metrics(e_real, e_fake), "magan/margin": margin}
        return {"energy": d_loss, "generator": g_loss}, metrics
