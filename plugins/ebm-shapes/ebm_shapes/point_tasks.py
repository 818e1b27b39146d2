"""Tasks on point clouds, scored by Chamfer distance beside baselines that need no model:

``pointcloud_reconstruct``: held-out clouds with the points on one side of a random plane
through the centroid missing (a ``share`` of them: those lowest along a random direction),
completed by masked sampling — the observed points held bit for bit, the missing ones
started from the recipe generator's fresh noise (or, ``fill = "nearest"``, from the nearest
training cloud's fill) and moved by the sampler under the energy (conditional sampling of
the missing points given the observed ones, the way GPointNet completes a partial cloud) or,
``by = "objective"``, by the objective's own completion model from that start
(``point_completion_dsm``'s denoising step). Beside it: the nearest training cloud (the one
closest to the observed points, one-sided Chamfer; its points lowest along the same
direction fill the missing ones), the observed points alone (the missing ones copies of observed points: no
completion) and the fresh noise itself. ``reconstruct.png``: rows original, observed,
completed, nearest training cloud.

It also draws ``interpolate.png``: GPointNet's latent interpolation — short-run Langevin
from a fixed initial noise z as a generator x = M(z); the initial noises of two chains are
interpolated, z_t = cos(πt/2)·z₀ + sin(πt/2)·z₁ (which keeps a zero-mean Gaussian's
variance), and every frame is run with the same seed, so the chain's noise is the same too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ebm_shapes.chamfer import chamfer
from ebm_shapes.points import PointCloudData, views_png
from ebm_shapes.tasks import _OPTIONS_DOC, _kernel, _n_steps, _run_batches, _sampler
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.masks import check_completes


@attrs.frozen
class PointReconstructConfig:
    """Held-out clouds with the points past a random plane missing, completed by masked sampling; Chamfer beside baselines."""

    share: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                               metadata={"doc": "the share of each cloud's points missing (those lowest along a "
                                                "random direction), in (0, 1)"})
    n: int = cfg.positive("held-out clouds to complete (the first n)", default=50)
    kernel: str | None = _kernel()
    kernel_options: dict[str, Any] = attrs.field(factory=dict, metadata={"doc": _OPTIONS_DOC})
    n_steps: int | None = _n_steps()
    fill: Literal["noise", "nearest"] = cfg.doc(
        "what the missing points start from: the generator's fresh noise, or the nearest training cloud's "
        "fill (the baseline)", default="noise")
    by: Literal["sampler", "objective"] = cfg.doc(
        "'sampler': the recipe's sampler (or `kernel`) on the energy, observed points held; 'objective': the "
        "objective's own completion model (e.g. point_completion_dsm's denoising step)", default="sampler")
    batch: int = cfg.positive("clouds per chain batch", default=50)
    show: int = cfg.positive("clouds in each row of the pictures", default=4)
    frames: int = attrs.field(default=8, validator=attrs.validators.ge(0),
                              metadata={"doc": "frames of the interpolation picture (0: none)"})
    pairs: int = cfg.positive("rows of the interpolation picture (pairs of initial noises)", default=2)


def split_plane(x: Tensor, share: float, rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """(missing (B, N) bool, direction (B, 3)): the ⌊share·N⌋ points of each cloud lowest along
    a random direction uniform on the sphere."""
    u = torch.randn(len(x), 3, generator=rng, device=rng.device).cpu()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    proj = (x * u[:, None]).sum(-1)
    k = max(1, int(share * x.shape[1]))
    missing = torch.zeros(x.shape[:2], dtype=torch.bool)
    missing.scatter_(1, proj.argsort(1)[:, :k], True)
    return missing, u


def one_sided(observed: Tensor, clouds: Tensor, *, chunk: int = 64) -> Tensor:
    """(len(clouds),): the mean squared distance from each observed point (M, 3) to its nearest point of each cloud."""
    out = [torch.cdist(observed.expand(len(c), -1, -1), c).pow(2).amin(2).mean(1) for c in clouds.split(chunk)]
    return torch.cat(out)


def nearest_fill(x: Tensor, missing: Tensor, u: Tensor, train: Tensor) -> Tensor:
    """Each cloud's missing points from the training cloud closest to its observed points:
    that cloud's points lowest along the same direction."""
    out = x.clone()
    for i in range(len(x)):
        seen = x[i][~missing[i]]
        t = train[int(one_sided(seen, train).argmin())]
        k = int(missing[i].sum())
        out[i][missing[i]] = t[(t @ u[i]).argsort()[:k]]
    return out


def observed_only(x: Tensor, missing: Tensor, rng: torch.Generator) -> Tensor:
    """The missing points replaced by copies of observed points (drawn at random): no completion."""
    out = x.clone()
    for i in range(len(x)):
        seen = x[i][~missing[i]]
        k = int(missing[i].sum())
        out[i][missing[i]] = seen[torch.randint(len(seen), (k,), generator=rng, device=rng.device).cpu()]
    return out


class PointReconstruct(Task):
    def __init__(self, c: PointReconstructConfig, energy, sampler, generator, device):
        self.c, self.energy, self.sampler, self.generator = c, energy, sampler, generator
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, c: PointReconstructConfig, ctx) -> PointReconstruct:
        who = "task 'pointcloud_reconstruct'"
        if not isinstance(ctx.require("data", who), PointCloudData):
            raise EbmError(f"{who} needs point clouds (data 'pointclouds')")
        if c.by == "objective":
            check_completes(ctx, who)
        sampler = _sampler(c, ctx, who) if c.by == "sampler" or c.frames else None  # chains: completion, pictures
        return cls(c, ctx.require("energy", who), sampler, ctx.require("generator", who), ctx.device)

    def _fresh(self, n: int, rng: torch.Generator) -> Tensor:
        return self.generator.fresh(n, rng=rng).cpu()

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = data.heldout().x[: self.c.n]
        missing, u = split_plane(x, self.c.share, rng)
        held = ~missing[..., None].expand_as(x)
        noise = torch.where(held, x, self._fresh(len(x), rng))
        nearest = nearest_fill(x, missing, u, data.dataset().x)
        start = nearest if self.c.fill == "nearest" else noise
        if self.c.by == "objective":
            completed = torch.cat([objective.complete(xs.to(self.device), ms.to(self.device), rng=rng,
                                                      n_steps=self.c.n_steps).cpu()
                                   for xs, ms in zip(start.split(self.c.batch), (~held).split(self.c.batch))])
            completed = torch.where(held, x, completed)
        else:
            completed = _run_batches(self.sampler, self.energy, start, batch=self.c.batch, n_steps=self.c.n_steps,
                                     rng=rng, device=self.device, mask=held)
        seen = observed_only(x, missing, rng)
        k = min(self.c.show, len(x))
        observed = torch.stack([x[i][~missing[i]] for i in range(k)])  # as many points in each
        views_png([x[:k], observed, completed[:k], nearest[:k]], out / "reconstruct.png",
                  titles=["original", "observed", "completed", "nearest train"])
        if self.c.frames:
            self.interpolate(rng, out / "interpolate.png")
        score = float(chamfer(completed, x).mean())
        base = float(chamfer(nearest, x).mean())
        return {"chamfer": score, "chamfer_nearest_training": base,
                "chamfer_observed_only": float(chamfer(seen, x).mean()),
                "chamfer_noise_fill": float(chamfer(noise, x).mean()),
                "vs_nearest_training": score / max(base, 1e-12)}

    def interpolate(self, rng: torch.Generator, path: Path) -> Tensor:
        """(frames, pairs, N, 3): chains from interpolated initial noises, the same seed for each frame."""
        z0, z1 = self._fresh(self.c.pairs, rng), self._fresh(self.c.pairs, rng)
        seed = int(torch.randint(2**62, (1,), generator=rng, device=rng.device))
        frames = []
        for t in torch.linspace(0, 1, self.c.frames).tolist():
            z = math.cos(math.pi * t / 2) * z0 + math.sin(math.pi * t / 2) * z1
            g = torch.Generator(self.device).manual_seed(seed)
            frames.append(self.sampler.run(z.to(self.device), self.energy, self.c.n_steps, rng=g).cpu())
        x = torch.stack(frames)
        views_png([x[:, p] for p in range(self.c.pairs)], path, size=0.8)
        return x
