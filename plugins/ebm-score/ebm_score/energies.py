"""A noise-conditional energy of images whose gradient is a denoiser's residual.

``residual_cnn`` is E(x, k) = ‖F(x, k)‖²/(2σ_k²), F a small U-Net that sees the level k, on
the NCSN ladder σ_k (:mod:`ebm_score.ladder`). Written x − D(x) = F(x), this is the energy
Salimans & Ho (2021, "Should EBMs model the energy or the score?") give a denoiser D: its
score −∇ₓE = −J_Fᵀ F/σ_k² is Tweedie's (D(x) − x)/σ_k² wherever F's Jacobian is the identity
on the noise, which a convolution learns easily. An energy read out through a strided
ConvNet (``level_cnn``) has to make its input gradient, of size ‖ε‖/σ, into a full-resolution
noise map; on Fashion-MNIST it never learned the small levels (docs/results.md, "Score
matching"). The ladder lives in the energy, so objective ``ncsn`` checks that the two agree.
"""

import attrs
import torch
from torch import Tensor, nn

from ebm_score.ladder import check_ladder, levels_field, sigma_max_field, sigma_min_field, sigmas
from ebmcore import Condition, Energy
from ebmcore import config as cfg


@attrs.frozen
class ResidualCNNConfig:
    """Denoiser-residual energy E(x, k) = ‖F(x, k)‖²/(2σ_k²) of images on the NCSN ladder (Salimans & Ho)."""

    channels: int = cfg.positive("channels of the U-Net's full-resolution layers (twice as many at half "
                                 "resolution)", default=32)
    sigma_max: float = sigma_max_field()
    sigma_min: float = sigma_min_field()
    levels: int = levels_field()

    def __attrs_post_init__(self):
        check_ladder(self.sigma_max, self.sigma_min)


class ResidualCNN(Energy):
    """E(x, k) = ‖F(x, k)‖²/(2σ_k²); F: two 3×3 convolutions at full resolution, two at half,
    back up, a skip from the first, a 3×3 output; each hidden layer gets a learned bias per level."""

    condition = Condition.LEVEL

    def __init__(self, channels_in: int, width: int, *, sigma_max: float, sigma_min: float, levels: int):
        super().__init__()
        self.ladder = {"sigma_max": sigma_max, "sigma_min": sigma_min, "levels": levels}
        c = width
        self.inp = nn.Conv2d(channels_in, c, 3, padding=1)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up = nn.Conv2d(2 * c, c, 3, padding=1)
        self.merge = nn.Conv2d(2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, channels_in, 3, padding=1)
        self.level_biases = nn.ModuleList(nn.Embedding(levels, n) for n in (c, 2 * c, 2 * c, c, c))
        for bias in self.level_biases:
            nn.init.zeros_(bias.weight)
        # deterministic from the config: not checkpointed, but moved with the module
        self.register_buffer("sigmas", sigmas(sigma_max, sigma_min, levels).float(), persistent=False)

    @classmethod
    def from_config(cls, c: ResidualCNNConfig, ctx) -> "ResidualCNN":
        shape = ctx.need_event_shape("energy 'residual_cnn'")
        if len(shape) != 3:
            raise ValueError(f"energy 'residual_cnn' needs images (channels, height, width), the data are {shape}")
        return cls(shape[0], c.channels, sigma_max=c.sigma_max, sigma_min=c.sigma_min, levels=c.levels)

    def residual(self, x: Tensor, levels: Tensor) -> Tensor:
        """F(x, k) = x − D(x, k), shaped like x."""
        act = nn.functional.silu
        bias = [b(levels)[:, :, None, None] for b in self.level_biases]
        full = act(self.inp(x) + bias[0])
        half = act(self.mid(act(self.down(full) + bias[1])) + bias[2])
        up = act(self.up(nn.functional.interpolate(half, size=full.shape[-2:], mode="nearest")) + bias[3])
        return self.out(act(self.merge(torch.cat([up, full], 1)) + bias[4]))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        # without a level, the least noisy one: exp(−E(x)) is then the model closest to the data
        levels = torch.zeros(len(x), dtype=torch.long, device=x.device) if cond is None else cond.long()
        sigma = self.sigmas[levels].to(x.dtype)
        return self.residual(x, levels).flatten(1).pow(2).sum(1) / (2 * sigma**2)
