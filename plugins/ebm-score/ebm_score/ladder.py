"""The geometric noise ladder of NCSN (Song & Ermon 2019), shared by objective ``ncsn`` and
sampler ``annealed_score_langevin``, which must agree on it.

Level k = 0 … L−1 has noise σ_k = σ_min·(σ_max/σ_min)^(k/(L−1)): level 0 is the *least*
noisy (σ_min, the paper's σ_L) and level L−1 the noisiest (σ_max, the paper's σ_1). The
order is the one ``ebm-drl``'s level energies assume: without a level they evaluate level
0, so exp(−E(x)) drawn without one (a density picture, a task that knows no levels) is the
model closest to the data.
"""

import math

import attrs
import torch
from torch import Tensor

from ebmcore import config as cfg


def sigma_max_field() -> float:
    return cfg.positive("largest noise σ_max of the geometric ladder (Song & Ermon 2020: about the largest "
                        "distance between two training examples)", default=1.0)


def sigma_min_field() -> float:
    return cfg.positive("smallest noise σ_min of the ladder (the level samples end at)", default=0.01)


def levels_field() -> int:
    return attrs.field(default=10, validator=attrs.validators.ge(2),
                       metadata={"doc": "noise levels L, geometric from sigma_max down to sigma_min"})


def check_ladder(sigma_max: float, sigma_min: float) -> None:
    """The ``__attrs_post_init__`` check of a config holding a ladder."""
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")


def sigmas(sigma_max: float, sigma_min: float, levels: int) -> Tensor:
    """σ_0 < … < σ_{L−1} (float64), level 0 the least noisy."""
    k = torch.arange(levels, dtype=torch.float64)
    return sigma_min * torch.exp(k * (math.log(sigma_max / sigma_min) / (levels - 1)))
