"""A 2-D navigation world made by code, with a known cost: the exact answer of inverse
optimal control.

A scene is a start on the left, a goal on the right and K circular obstacles between them.
A trajectory is T points p_0 … p_{T−1} in the plane from the start to the goal. Its cost

    c(p) = w_len · Σ_t ‖p_{t+1} − p_t‖² · (T − 1)          (length: even steps, short path)
         + w_obs · Σ_t Σ_k max(0, r_k + m − ‖p_t − c_k‖)²    (obstacles, with a margin m)
         + w_smooth · Σ_t ‖p_{t+1} − 2p_t + p_{t−1}‖² · (T − 1)³   (smoothness)

The expert plans by gradient descent on c from the straight line (bent slightly towards a
random side, so that descent leaves the line through an obstacle's centre): the
*optimal* trajectory. Demonstrations are the expert's plan plus, with ``temperature`` τ >
0, Langevin steps on c/τ from it: draws of the noisy-rational expert exp(−c/τ), the model
maximum likelihood recovers (c/τ up to a constant).

An example is one scene as a tensor ``(T, 2 + 3K)``: the positions in channels 0–1 and
each obstacle (cx, cy, r) repeated at every time in channels 2 + 3k …; the observed part
(held fixed by sampling) is the start, the goal and every obstacle channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the weights of the true cost (length, obstacles, smoothness) and the obstacle margin
W_LEN, W_OBS, W_SMOOTH, MARGIN = 1.0, 30.0, 0.005, 0.05


def scenes(n: int, *, obstacles: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` scenes: starts ``(n, 2)`` at x = −0.9, goals ``(n, 2)`` at x = 0.9, obstacles
    ``(n, K, 3)`` (centre, radius) with centres in [−0.5, 0.5] × [−0.6, 0.6] and radii in
    [0.12, 0.28]."""
    g = torch.Generator().manual_seed(seed)
    start = torch.stack([torch.full((n,), -0.9), torch.rand(n, generator=g) * 1.2 - 0.6], 1)
    goal = torch.stack([torch.full((n,), 0.9), torch.rand(n, generator=g) * 1.2 - 0.6], 1)
    centre = torch.rand(n, obstacles, 2, generator=g) * torch.tensor([1.0, 1.2]) - torch.tensor([0.5, 0.6])
    radius = 0.12 + 0.16 * torch.rand(n, obstacles, 1, generator=g)
    return start, goal, torch.cat([centre, radius], 2)


def straight(start: Tensor, goal: Tensor, length: int) -> Tensor:
    """The straight lines ``(n, T, 2)`` from start to goal, evenly spaced."""
    s = torch.linspace(0, 1, length, dtype=start.dtype).view(1, length, 1)
    return start.unsqueeze(1) + s * (goal - start).unsqueeze(1)


def cost(path: Tensor, obstacles: Tensor) -> Tensor:
    """The true cost c of paths ``(n, T, 2)`` among obstacles ``(n, K, 3)``: ``(n,)``."""
    steps = path.shape[1] - 1
    d = path[:, 1:] - path[:, :-1]
    length = d.pow(2).sum((1, 2)) * steps
    gap = (path.unsqueeze(2) - obstacles[:, None, :, :2]).norm(dim=3)  # (n, T, K)
    inside = (obstacles[:, None, :, 2] + MARGIN - gap).clamp(min=0)
    bend = (d[:, 1:] - d[:, :-1]).pow(2).sum((1, 2)) * steps**3
    return W_LEN * length + W_OBS * inside.pow(2).sum((1, 2)) + W_SMOOTH * bend


def stiffness(length: int) -> float:
    """A bound on the largest eigenvalue of c's Hessian for paths of ``length`` points (the
    length and smoothness terms' exactly, the obstacles' inside them)."""
    steps = length - 1
    return 8 * W_LEN * steps + 32 * W_SMOOTH * steps**3 + 2 * W_OBS


def _transposed_difference(v: Tensor) -> Tensor:
    """Dᵀv for the difference D p = p[1:] − p[:-1] along dimension 1: (Dᵀv)_t = v_{t−1} − v_t."""
    pad = torch.nn.functional.pad(v, (0, 0, 1, 1))
    return pad[:, :-1] - pad[:, 1:]


def _cost_grad(path: Tensor, obstacles: Tensor) -> Tensor:
    """∇c at ``path`` in closed form (autograd costs a millisecond a call), zero at the start and goal."""
    steps = path.shape[1] - 1
    d = path[:, 1:] - path[:, :-1]
    bend = d[:, 1:] - d[:, :-1]
    g = 2 * W_LEN * steps * _transposed_difference(d)
    g = g + 2 * W_SMOOTH * steps**3 * _transposed_difference(_transposed_difference(bend))
    away = path.unsqueeze(2) - obstacles[:, None, :, :2]  # (n, T, K, 2)
    gap = away.norm(dim=3, keepdim=True).clamp_min(1e-12)
    inside = (obstacles[:, None, :, 2:3] + MARGIN - gap).clamp(min=0)
    g = g - 2 * W_OBS * (inside * away / gap).sum(2)
    g[:, 0] = 0  # the start and goal stay
    g[:, -1] = 0
    return g


def plan(start: Tensor, goal: Tensor, obstacles: Tensor, length: int, *, steps: int = 600,
         rng: torch.Generator | None = None) -> Tensor:
    """The expert's plans ``(n, T, 2)``: gradient descent (with momentum) on c from the
    straight line, bent by 0.02·sin(πs) towards a random side."""
    n = len(start)
    side = (torch.randint(0, 2, (n, 1, 1), generator=rng) * 2 - 1).to(start.dtype)
    s = torch.linspace(0, 1, length, dtype=start.dtype).view(1, length, 1)
    normal = torch.stack([-(goal - start)[:, 1], (goal - start)[:, 0]], 1).unsqueeze(1)
    normal = normal / normal.norm(dim=2, keepdim=True)
    p = straight(start, goal, length) + 0.02 * side * torch.sin(torch.pi * s) * normal
    velocity = torch.zeros_like(p)
    lr = 1.0 / stiffness(length)
    for _ in range(steps):
        velocity = 0.9 * velocity - lr * _cost_grad(p, obstacles)
        p = p + velocity
    return p


def noisy_rational(path: Tensor, obstacles: Tensor, temperature: float, *, steps: int,
                   rng: torch.Generator) -> Tensor:
    """Langevin steps on c/τ from ``path`` (start and goal held): draws of exp(−c/τ)."""
    if temperature <= 0:
        return path
    step = 0.2 * temperature / stiffness(path.shape[1])  # s/τ times the stiffness: 0.2
    p = path.clone()
    for _ in range(steps):
        noise = torch.randn(p.shape, generator=rng, dtype=p.dtype)
        noise[:, 0] = noise[:, -1] = 0
        p = p - step / temperature * _cost_grad(p, obstacles) + (2 * step) ** 0.5 * noise
    return p


def pack(path: Tensor, obstacles: Tensor) -> Tensor:
    """Scenes as examples ``(n, T, 2 + 3K)``: the positions, then each obstacle repeated in time."""
    n, length = path.shape[:2]
    return torch.cat([path, obstacles.reshape(n, 1, -1).expand(n, length, -1)], 2)


def unpack(x: Tensor) -> tuple[Tensor, Tensor]:
    """(paths ``(n, T, 2)``, obstacles ``(n, K, 3)`` read at the first time) of examples."""
    return x[..., :2], x[:, 0, 2:].reshape(len(x), -1, 3)


def observed_mask(length: int, obstacles: int) -> Tensor:
    """True where a scene's entries are given: the start, the goal and the obstacles."""
    m = torch.zeros(length, 2 + 3 * obstacles, dtype=torch.bool)
    m[:, 2:] = True
    m[0, :2] = m[-1, :2] = True
    return m
