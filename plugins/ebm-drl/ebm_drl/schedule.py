"""The noise levels of diffusion recovery likelihood, in the paper's scaled form.

Levels t = 0 … T−1 hold the data diffused to

    x_t = ā_t·x + σ̄_t·ε,    ā_t² + σ̄_t² = 1   (variance preserving),

and consecutive levels are one Gaussian step apart:

    x_{t+1} = a_{t+1}·x_t + σ_{t+1}·ε,    a_{t+1} = ā_{t+1}/ā_t,    σ_{t+1}² = 1 − a_{t+1}².

Above the last level x_T ~ N(0, I): a_T = 0, σ_T = 1, so progressive sampling starts from
pure noise. ā comes, as in Gao et al.'s code, from DDPM's 1,000-step β sequence (linear
from ``beta_start`` to ``beta_end``, or the cosine schedule of Nichol & Dhariwal 2021):
ā_t = ∏_{i ≤ k_t} √(1 − β_i) at fine steps k_t = t·⌊1000 / (2(T − 1))⌋. The data levels
span the first half of the fine chain; level 0 is the data with one fine step of noise
(σ̄_0 = √β_0), and it is what sampling returns.

Level t's Langevin step is s_t² = b²·σ_{t+1}², times σ̄_t/σ̄_0 with the paper's step
schedule (larger steps at noisier levels).
"""

import math
from typing import Literal

import torch
from torch import Tensor

FINE_STEPS = 1000

NoiseSchedule = Literal["linear", "cosine"]
StepSchedule = Literal["paper", "sigma"]


def fine_betas(kind: NoiseSchedule, beta_start: float, beta_end: float) -> Tensor:
    """DDPM's per-step noise variances β_0 … β_999 (float64)."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, FINE_STEPS, dtype=torch.float64)
    u = torch.arange(FINE_STEPS + 1, dtype=torch.float64) / FINE_STEPS
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


class Levels:
    """Per-level coefficients as float64 tensors of length T (index t = level t).

    ``sigma_cum``, ``a_cum``: σ̄_t, ā_t of x_t given x. ``sigma_next``, ``a_next``: σ_{t+1},
    a_{t+1} of the step to the level above (the top level's is pure noise: 1, 0).
    ``scale``: the scaled variable y_t = scale_t·x_t the energy sees (a_{t+1}; 1 at the top,
    where a_T = 0). ``recovery``: 1 where x_{t+1} informs x_t, 0 at the top (the chain then
    samples the marginal of x_{T−1}). ``step2``: the Langevin step s_t². ``loss_weight``:
    σ_1/σ_{t+1}, the paper's weighting of the levels.
    """

    def __init__(self, levels: int, kind: NoiseSchedule = "linear", *, beta_start: float = 1e-4,
                 beta_end: float = 0.02, b2: float = 2e-4, step_schedule: StepSchedule = "paper"):
        if levels < 2:
            raise ValueError(f"levels must be ≥ 2, got {levels}")
        self.levels = levels
        betas = fine_betas(kind, beta_start, beta_end)
        stride = FINE_STEPS // (2 * (levels - 1))
        if stride < 1:
            raise ValueError(f"levels must be ≤ {FINE_STEPS // 2 + 1}, got {levels}")
        a_fine = torch.cumprod((1 - betas).sqrt(), 0)
        self.a_cum = a_fine[torch.arange(levels) * stride]
        self.sigma_cum = (1 - self.a_cum**2).sqrt()
        self.a_next = torch.cat([self.a_cum[1:] / self.a_cum[:-1], torch.zeros(1, dtype=torch.float64)])
        self.sigma_next = (1 - self.a_next**2).sqrt()
        top = torch.arange(levels) == levels - 1
        self.scale = torch.where(top, torch.ones_like(self.a_next), self.a_next)
        self.recovery = (~top).double()
        growth = self.sigma_cum / self.sigma_cum[0] if step_schedule == "paper" else torch.ones_like(self.sigma_cum)
        self.step2 = b2 * self.sigma_next**2 * growth
        self.loss_weight = self.sigma_next[0] / self.sigma_next

    def as_dict(self) -> dict[str, Tensor]:
        return {"a_cum": self.a_cum, "sigma_cum": self.sigma_cum, "a_next": self.a_next,
                "sigma_next": self.sigma_next, "scale": self.scale, "recovery": self.recovery,
                "step2": self.step2, "loss_weight": self.loss_weight}
