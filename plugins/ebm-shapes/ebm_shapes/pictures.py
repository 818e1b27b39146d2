"""Pictures of voxel shapes ``(N, 1, R, R, R)`` (occupied where > 0).

- :func:`views_png`: each shape seen along the three axes, each view a depth map (the
  nearest occupied cell bright, farther ones darker, empty columns black): three small
  images per shape, cheap at any resolution; written through the kit's image grid.
- :func:`voxels_png`: the shapes turned and shaded (:func:`rendered`): three oblique views
  each, a rendering of the solid surface (matplotlib's ``Axes3D.voxels`` needs minutes at
  32³, and seconds per shape even at 8³).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ebmcore.kit.pictures import image_grid_png

#: shapes shown in a picture of samples
SHOWN = 16


def depth_views(x: Tensor) -> Tensor:
    """(N, 3, R, R) in [−1, 1]: for each shape, its depth maps seen from −x, −y and −z
    (the first occupied cell along the ray: 1 at the near face, 0.2 at the far one; −1: none)."""
    occ = x.detach().float().cpu()[:, 0] > 0  # (N, R, R, R) indexed [x, y, z]
    res = occ.shape[-1]
    shade = torch.linspace(1.0, 0.2, res)
    views = []
    for axis in range(3):
        o = occ.movedim(axis + 1, -1)  # the viewing axis last
        hit = o.any(-1)
        first = o.float().argmax(-1)  # the first occupied cell along the ray
        views.append(torch.where(hit, shade[first], torch.full_like(first, -1.0, dtype=torch.float32)))
    # rows of an image are the second remaining axis flipped (up in the picture = + along it)
    return torch.stack(views, 1).transpose(-1, -2).flip(-2)


def views_png(x: Tensor, path: Path, *, shown: int = SHOWN, per_row: int = 4) -> None:
    """Up to ``shown`` shapes, ``per_row`` to a row, each as its three depth views side by side."""
    v = depth_views(x[:shown])
    image_grid_png(rearrange(v, "n k h w -> (n k) 1 h w"), path, columns=3 * min(per_row, len(v)),
                   scale=max(1, 128 // v.shape[-1]), limit=3 * len(v))


def rows_png(rows: list[Tensor], path: Path) -> None:
    """One row of shapes per tensor of ``rows`` (each (k, 1, R, R, R)), each :func:`rendered` from three directions."""
    k = max(len(r) for r in rows)
    v = torch.cat([rendered(r) for r in rows])
    image_grid_png(rearrange(v, "n k h w -> (n k) 1 h w"), path, columns=3 * k,
                   scale=max(1, 192 // v.shape[-1]), limit=len(v) * 3)


def _rotation(azimuth: float, elevation: float) -> Tensor:
    a, e = math.radians(azimuth), math.radians(elevation)
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
    return rx @ rz


#: (azimuth, elevation) in degrees of the views :func:`rendered` draws
VIEWS = ((35.0, 30.0), (155.0, 30.0), (275.0, -35.0))


def rendered(x: Tensor, views: tuple[tuple[float, float], ...] = VIEWS, *, upsample: int = 2) -> Tensor:
    """(N, len(views), S, S) in [−1, 1], S = ``upsample``·R: each shape turned by each view's
    rotation (trilinear resampling of the occupancy, ``upsample`` times finer), seen along
    an axis, its surface shaded by the normal of the depth map under a light from the upper
    left and darkened with depth; black where no ray meets the shape. A cheap stand-in for
    drawing the cubes, which takes minutes at 32³."""
    occ = (x.detach().float().cpu()[:, :1] > 0).float()
    n, s = len(occ), occ.shape[-1] * upsample
    light = torch.tensor([-0.45, -0.55, 1.0])
    light = light / light.norm()
    out = []
    for azimuth, elevation in views:
        theta = torch.cat([_rotation(azimuth, elevation), torch.zeros(3, 1)], 1).expand(n, 3, 4)
        grid = F.affine_grid(theta, [n, 1, s, s, s], align_corners=False)
        vol = F.grid_sample(occ, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] > 0.5
        hit = vol.any(1)
        depth = vol.float().argmax(1).float() / s  # (N, H, W): the first occupied cell along the ray
        # the depth map's slopes where both neighbours are on the shape (0 across the silhouette)
        dx = torch.zeros_like(depth)
        dy = torch.zeros_like(depth)
        both_x = hit[:, :, 1:] & hit[:, :, :-1]
        both_y = hit[:, 1:, :] & hit[:, :-1, :]
        dx[:, :, 1:] = torch.where(both_x, depth[:, :, 1:] - depth[:, :, :-1], 0.0) * s / 2
        dy[:, 1:, :] = torch.where(both_y, depth[:, 1:, :] - depth[:, :-1, :], 0.0) * s / 2
        normal = torch.stack([-dx, -dy, torch.ones_like(depth)], -1)
        normal = normal / normal.norm(dim=-1, keepdim=True)
        lambert = (normal @ light).clamp(min=0)
        shade = (0.25 + 0.75 * lambert) * (1 - 0.45 * depth)
        out.append(torch.where(hit, shade * 2 - 1, torch.full_like(shade, -1.0)))
    return torch.stack(out, 1).flip(-2)


def voxels_png(x: Tensor, path: Path, *, shown: int = SHOWN, per_row: int = 4) -> None:
    """Up to ``shown`` shapes, ``per_row`` to a row, each :func:`rendered` from three directions."""
    v = rendered(x[:shown])
    image_grid_png(rearrange(v, "n k h w -> (n k) 1 h w"), path, columns=3 * min(per_row, len(v)),
                   scale=max(1, 192 // v.shape[-1]), limit=3 * len(v))
