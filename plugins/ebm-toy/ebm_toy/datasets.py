"""Two-dimensional toy data sets for energy-based models.

Each set is a pure torch sampler: ``sample_toy(name, n, rng=g)`` returns a
float32 tensor of shape (n, 2) and draws all randomness from ``g`` (never the
global torch RNG and never numpy), so equal generator states give equal data.
Shapes follow the toy sets of FFJORD (Grathwohl et al., 2019) and Neural
Spline Flows; every set lies roughly within [-4, 4]^2, and ``data_bounds``
gives a square range covering each one with a margin, for plots and for
uniform noise in samplers.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

TOY_DATASETS: tuple[str, ...] = (
    "eight_gaussians",
    "two_moons",
    "rings",
    "swiss_roll",
    "checkerboard",
    "pinwheel",
)

_BOUNDS: dict[str, tuple[float, float]] = {
    "eight_gaussians": (-3.0, 3.0),
    "two_moons": (-4.0, 4.0),
    "rings": (-2.5, 2.5),
    "swiss_roll": (-3.5, 3.5),
    "checkerboard": (-4.5, 4.5),
    "pinwheel": (-4.5, 4.5),
}


def _unit_rand(n: int, rng: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=rng, dtype=torch.float64)


def _normal(shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=rng, dtype=torch.float64)


def _eight_gaussians(n: int, rng: torch.Generator) -> torch.Tensor:
    """8 equal-weight modes at radius 2, angles k*pi/4, isotropic std 0.02."""
    k = torch.randint(0, 8, (n,), generator=rng).to(torch.float64)
    angle = k * (math.pi / 4)
    centres = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + 0.02 * _normal((n, 2), rng)


def _two_moons(n: int, rng: torch.Generator) -> torch.Tensor:
    """Two interleaved half circles (sklearn moons x2, noise 0.2), x in ~[-3, 3], y in ~[-1.2, 1.8]."""
    upper = _unit_rand(n, rng) < 0.5
    t = math.pi * _unit_rand(n, rng)
    x = torch.where(upper, torch.cos(t), 1.0 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    moons = torch.stack([x, y], dim=1) + 0.1 * _normal((n, 2), rng)
    # FFJORD's affine map, which centres the pair of moons near the origin.
    return 2.0 * moons + torch.tensor([-1.0, -0.2], dtype=torch.float64)


def _rings(n: int, rng: torch.Generator) -> torch.Tensor:
    """4 equal-weight concentric circles, radii 0.5, 1, 1.5, 2, radial noise std 0.05."""
    radius = 0.5 * (1 + torch.randint(0, 4, (n,), generator=rng)).to(torch.float64)
    angle = 2 * math.pi * _unit_rand(n, rng)
    ring = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return ring + 0.05 * _normal((n, 2), rng)


def _swiss_roll(n: int, rng: torch.Generator) -> torch.Tensor:
    """Spiral r = c*t for t in [1.5pi, 4.5pi] (sklearn's roll), radii 0.83..2.5, noise std 0.1."""
    t = 1.5 * math.pi * (1 + 2 * _unit_rand(n, rng))
    scale = 2.5 / (4.5 * math.pi)  # the outermost turn lands at radius 2.5
    roll = scale * t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    return roll + 0.1 * _normal((n, 2), rng)


def _checkerboard(n: int, rng: torch.Generator) -> torch.Tensor:
    """Uniform on the 8 'black' 2x2 squares of a 4x4 board covering [-4, 4)^2 (FFJORD)."""
    x1 = 4 * _unit_rand(n, rng) - 2
    # Uniform in [0, 1) or [-2, -1), then shifted up one row in odd columns,
    # so floor(x1) + floor(x2) is always even.
    x2 = _unit_rand(n, rng) - 2 * torch.randint(0, 2, (n,), generator=rng).to(torch.float64)
    x2 = x2 + torch.remainder(torch.floor(x1), 2)
    return 2 * torch.stack([x1, x2], dim=1)


def _pinwheel(n: int, rng: torch.Generator) -> torch.Tensor:
    """5 curved arms (FFJORD pinwheel: radial std 0.3, tangential 0.1, rate 0.25, x2); radius mostly < 4."""
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    arm = torch.randint(0, arms, (n,), generator=rng).to(torch.float64)
    feats = _normal((n, 2), rng) * torch.tensor([radial_std, tangential_std], dtype=torch.float64)
    feats[:, 0] += 1.0
    # Points further out are rotated more, which bends each arm into a spiral.
    angle = arm * (2 * math.pi / arms) + rate * torch.exp(feats[:, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Row vector times [[cos, -sin], [sin, cos]], exactly as in FFJORD.
    x = feats[:, 0] * cos + feats[:, 1] * sin
    y = -feats[:, 0] * sin + feats[:, 1] * cos
    return 2 * torch.stack([x, y], dim=1)


_SAMPLERS: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
    "eight_gaussians": _eight_gaussians,
    "two_moons": _two_moons,
    "rings": _rings,
    "swiss_roll": _swiss_roll,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
}


def _check_name(name: str) -> None:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; valid names: {', '.join(TOY_DATASETS)}")


def sample_toy(name: str, n: int, *, rng: torch.Generator) -> torch.Tensor:
    """Draw ``n`` points of the toy data set ``name`` as a float32 (n, 2) tensor.

    All randomness comes from ``rng``. Raises ValueError for an unknown name.
    """
    _check_name(name)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return _SAMPLERS[name](n, rng).to(torch.float32)


def data_bounds(name: str) -> tuple[float, float]:
    """Square range (lo, hi), the same on both axes, covering data set ``name`` with a margin."""
    _check_name(name)
    return _BOUNDS[name]
