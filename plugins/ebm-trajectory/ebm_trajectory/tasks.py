"""Tasks with a learned trajectory cost.

``forecast`` (data ``mocap``): held-out windows with their future missing, completed by k
masked chains each (the past held fixed, bit for bit); the most likely forecast is the
lowest-energy of the k, also reported: the mean of the k and the best of the k (an oracle
pick: how good the best sample is). Each is scored by the mean displacement error (MDE) at
each horizon h: the Euclidean distance between predicted and true positions of every point
(joint) at the frame h seconds after the last observed one, averaged over points and
windows, in the data's units. Beside them, measured identically: constant velocity (the
last observed velocity continued), the last pose held, and the nearest neighbour (the
future of the training window whose past is nearest in L2).

``plan`` (data ``navigation``): for held-out scenes, (1) the Spearman rank correlation of
the learned energy with the true cost over a set of trajectories of each scene — the
expert's optimal plan, the held-out demonstration, smooth and rough perturbations of the
plan at four scales, the straight line and random smooth paths — averaged over scenes;
(2) paths planned by a chain on the learned energy from the straight line (the recipe's
sampler, or noise-free descent through ``kernel``), their mean point distance to the
expert's optimal plan beside the straight line's and the demonstrations', their true cost
above the optimum, and the share of their points inside an obstacle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ebm_trajectory import navigation as nav
from ebm_trajectory.data import MocapData, NavigationData, spread
from ebm_trajectory.guess import guess
from ebm_trajectory.objectives import chain_start
from ebm_trajectory.pictures import motion_png, scenes_png
from ebm_trajectory.retrieval import nearest_neighbours
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain


def _kernel(c, ctx, who: str):
    if c.kernel is None:
        return one_row_per_chain(ctx.require("sampler", who), who)
    config = cfg.structured(dict(c.kernel_options), ctx.registry.get("sampler", c.kernel).config,
                            f"kernel_options (kernel '{c.kernel}')")
    return one_row_per_chain(ctx.make("sampler", c.kernel, config), who)


def _kernel_fields():
    return (cfg.doc("a registered sampler for the chains, built with `kernel_options` (e.g. noise-free "
                    "Langevin: descent); unset: the recipe's sampler", default=None),
            attrs.field(factory=dict, metadata={"doc": "the kernel's settings (keys of its own section), e.g. "
                                                       "{step_size = 0.01, noise = 0.0, n_steps = 100}"}))


def _check_kernel(self):
    if self.kernel_options and self.kernel is None:
        raise ValueError("kernel_options needs kernel (the recipe's sampler keeps its own settings)")


def _positive_list(_inst, _attr, value):
    if not value or min(value) <= 0:
        raise ValueError(f"must be a non-empty list of positive numbers, got {list(value)}")


_KERNEL, _OPTIONS = _kernel_fields()


@attrs.frozen
class ForecastConfig:
    """Motion forecasting of held-out windows by masked sampling: MDE beside constant velocity and nearest neighbour."""

    horizons: tuple[float, ...] = attrs.field(default=(0.5, 1.0), validator=_positive_list,
                                              metadata={"doc": "seconds after the last observed frame scored"})
    n: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                                metadata={"doc": "held-out windows forecast (the first n; unset: all)"})
    k: int = cfg.positive("samples per window; the most likely is the lowest-energy one", default=8)
    start: Literal["interpolate", "extrapolate", "neighbours"] = cfg.doc(
        "where chains start: the last pose held ('interpolate'), constant velocity ('extrapolate'), or the "
        "futures of the k nearest training windows, one per chain ('neighbours': retrieval refined and "
        "ranked by the energy)", default="extrapolate")
    start_noise: float = cfg.non_negative("std of noise added to the start's free entries", default=0.1)
    kernel: str | None = _KERNEL
    kernel_options: dict[str, Any] = _OPTIONS
    n_steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
                                      metadata={"doc": "chain steps (default: the kernel's n_steps); 0: the starts "
                                                       "are only ranked by their energy (retrieval reranked)"})
    batch: int = cfg.positive("windows per chain batch", default=256)
    show: int = cfg.positive("windows drawn in forecast.png", default=4)

    def __attrs_post_init__(self):
        _check_kernel(self)


def displacement(a: Tensor, b: Tensor, frame: int, dims: int) -> float:
    """Mean Euclidean distance between the points of windows ``a`` and ``b`` ``(n, T, P·dims)`` at ``frame``."""
    d = (a[:, frame] - b[:, frame]).reshape(len(a), -1, dims).double()
    return float(d.norm(dim=2).mean())


class Forecast(Task):
    def __init__(self, c: ForecastConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: ForecastConfig, ctx) -> Forecast:
        who = "task 'forecast'"
        data = ctx.require("data", who)
        if not isinstance(data, MocapData):
            raise EbmError(f"{who} needs data 'mocap'")
        last = max(c.horizons)
        if data.past - 1 + round(last * data.fps) >= data.event_shape[0]:
            raise EbmError(f"{who}: the horizon {last} s is {round(last * data.fps)} frames at {data.fps:g} fps, "
                           f"beyond the {data.event_shape[0] - data.past} future frames of the windows")
        sampler = None if c.n_steps == 0 else _kernel(c, ctx, who)  # 0 steps: the starts are only ranked
        return cls(c, ctx.require("energy", who), sampler, ctx.device)

    def samples(self, x: Tensor, observed: Tensor, neighbours: Tensor, *, rng) -> tuple[Tensor, Tensor]:
        """k forecasts of each window ``(k, n, T, C)`` and their energies ``(k, n)``."""
        out, energies = [], []
        for j in range(self.c.k):
            done, es = [], []
            base = neighbours[j] if self.c.start == "neighbours" else x
            for xs, ms in zip(base.split(self.c.batch), observed.split(self.c.batch), strict=True):
                xs, ms = xs.to(self.device), ms.to(self.device)
                if self.c.start == "neighbours":  # the neighbour's future, plus noise
                    noise = torch.randn(xs.shape, generator=rng, device=rng.device).to(xs.device)
                    x0 = torch.where(ms, xs, xs + self.c.start_noise * noise)
                else:
                    x0 = chain_start(xs, ms, self.c.start, self.c.start_noise, rng)
                y = x0 if self.c.n_steps == 0 else self.sampler.run(x0, self.energy, self.c.n_steps, rng=rng,
                                                                    mask=ms)
                with torch.no_grad():
                    es.append(self.energy(y).cpu())
                done.append(y.cpu())
            out.append(torch.cat(done))
            energies.append(torch.cat(es))
        return torch.stack(out), torch.stack(energies)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        held = data.heldout()
        x, observed = held.x[: self.c.n], held.cond[: self.c.n]
        neighbours = nearest_neighbours(x, observed, data.dataset().x, self.c.k)
        ks, es = self.samples(x, observed, neighbours, rng=rng)
        likely = ks[es.argmin(0), torch.arange(len(x))]
        mean = ks.mean(0)
        predictions = {"most likely": likely, "mean of k": mean,
                       "constant velocity": guess(x, observed, "extrapolate"),
                       "nearest neighbour": neighbours[0], "mean of k nearest neighbours": neighbours.mean(0),
                       "last pose": guess(x, observed, "interpolate")}
        keys = {"most likely": "mde", "mean of k": "mean", "constant velocity": "constant_velocity",
                "nearest neighbour": "nearest_neighbour", "mean of k nearest neighbours": "neighbours_mean",
                "last pose": "last_pose"}
        metrics = {}
        for h in self.c.horizons:
            frame = data.past - 1 + round(h * data.fps)
            tag = f"@{h:g}s"
            for label, key in keys.items():
                metrics[key + tag] = data.scale * displacement(predictions[label], x, frame, data.dims)
            errors = torch.stack([(k[:, frame] - x[:, frame]).reshape(len(x), -1, data.dims).norm(dim=2).mean(1)
                                  for k in ks])
            metrics["best_of_k" + tag] = data.scale * float(errors.min(0).values.mean())
            metrics["vs_best_baseline" + tag] = metrics["mde" + tag] / min(
                metrics["constant_velocity" + tag], metrics["nearest_neighbour" + tag])
        pick = spread(min(self.c.show, len(x)), len(x))
        shown = {k: predictions[k][pick] * data.scale for k in ("most likely", "constant velocity",
                                                                "nearest neighbour")}
        motion_png(x[pick] * data.scale, shown, out / "forecast.png", past=data.past, fps=data.fps,
                   channels=data.shown, names=[data.names[c] for c in data.shown], shown=self.c.show)
        return metrics


@attrs.frozen
class PlanConfig:
    """Inverse optimal control on held-out scenes: rank correlation of learned vs true cost; planned vs expert paths."""

    n: int = cfg.positive("held-out scenes (the first n)", default=100)
    random: int = cfg.positive("random smooth paths per scene in the ranked set", default=3)
    start_noise: float = cfg.non_negative("std of noise added to the straight line that planning starts from",
                                          default=0.0)
    kernel: str | None = _KERNEL
    kernel_options: dict[str, Any] = _OPTIONS
    n_steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                                      metadata={"doc": "planning chain steps (default: the kernel's n_steps)"})
    seed: int = cfg.non_negative("seed of the perturbations and random paths", default=0)
    show: int = cfg.positive("scenes drawn in plan.png", default=8)

    def __attrs_post_init__(self):
        _check_kernel(self)


#: scales of the perturbations of the optimal plan in the ranked set
SCALES = (0.01, 0.03, 0.1, 0.3)


def ranks(x: Tensor) -> Tensor:
    """Ranks 0 … m−1 along the last dimension (ties broken by order)."""
    return x.argsort(-1).argsort(-1).to(torch.float64)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation of each row of ``a`` with the same row of ``b`` ``(n, m)``."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)


def ranked_set(optimal: Tensor, demo: Tensor, *, random: int, rng: torch.Generator) -> Tensor:
    """Trajectories ``(n, m, T, 2)`` per scene: the optimal plan, the demonstration, a smooth and a
    rough perturbation of the plan at each of :data:`SCALES`, the straight line, ``random``
    random smooth paths; start and goal those of the plan."""
    n, t, _ = optimal.shape
    s = torch.linspace(0, 1, t, dtype=optimal.dtype).view(1, t, 1)
    bumps = torch.stack([torch.sin(torch.pi * f * s) for f in (1, 2, 3)], 0)  # (3, 1, T, 1)
    out = [optimal, demo]
    for scale in SCALES:
        w = torch.randn(3, n, 1, 2, generator=rng, dtype=optimal.dtype)
        out.append(optimal + scale * (w * bumps).sum(0) / 3**0.5)
        rough = scale * torch.randn(optimal.shape, generator=rng, dtype=optimal.dtype)
        rough[:, 0] = rough[:, -1] = 0
        out.append(optimal + rough)
    line = nav.straight(optimal[:, 0], optimal[:, -1], t)
    out.append(line)
    for _ in range(random):
        w = (torch.rand(3, n, 1, 2, generator=rng, dtype=optimal.dtype) - 0.5) * torch.tensor([0.3, 1.0])
        out.append(line + (w * bumps).sum(0))
    return torch.stack(out, 1)


class Plan(Task):
    def __init__(self, c: PlanConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: PlanConfig, ctx) -> Plan:
        who = "task 'plan'"
        if not isinstance(ctx.require("data", who), NavigationData):
            raise EbmError(f"{who} needs data 'navigation'")
        return cls(c, ctx.require("energy", who), _kernel(c, ctx, who), ctx.device)

    def _energy(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.energy(part.to(self.device)).cpu() for part in x.split(1024)])

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        held = data.heldout()
        x, observed = held.x[: self.c.n], held.cond[: self.c.n]
        optimal = data.optimal_heldout[: self.c.n]
        demo, obstacles = nav.unpack(x)
        g = torch.Generator().manual_seed(self.c.seed)
        candidates = ranked_set(optimal.double(), demo.double(), random=self.c.random, rng=g).float()
        n, m = candidates.shape[:2]
        scenes = nav.pack(candidates.flatten(0, 1), obstacles.repeat_interleave(m, 0))
        learned = self._energy(scenes).view(n, m)
        true = data.true_cost(scenes).view(n, m)
        rho = spearman(learned.double(), true.double())

        line = guess(x, observed, "interpolate")
        x0 = chain_start(x.to(self.device), observed.to(self.device), "interpolate", self.c.start_noise, rng)
        planned = self.sampler.run(x0, self.energy, self.c.n_steps, rng=rng, mask=observed.to(self.device)).cpu()
        paths, straight = nav.unpack(planned)[0], nav.unpack(line)[0]

        def distance(p: Tensor) -> float:
            return float((p - optimal).norm(dim=2).mean())

        def excess(p: Tensor) -> float:
            return float((nav.cost(p.double(), obstacles.double()) - nav.cost(optimal.double(), obstacles.double()))
                         .mean())

        def collisions(p: Tensor) -> float:
            gap = (p.unsqueeze(2) - obstacles[:, None, :, :2]).norm(dim=3)
            return float((gap < obstacles[:, None, :, 2]).any(2)[:, 1:-1].float().mean())

        scenes_png({"optimal": optimal, "planned": paths, "straight": straight}, obstacles, out / "plan.png",
                   shown=self.c.show)
        return {"spearman": float(rho.mean()), "spearman/min": float(rho.min()),
                "spearman/median": float(rho.median()),
                "distance": distance(paths), "distance/straight": distance(straight),
                "distance/demonstration": distance(demo),
                "excess_cost": excess(paths), "excess_cost/straight": excess(straight),
                "excess_cost/demonstration": excess(demo),
                "collisions": collisions(paths), "collisions/straight": collisions(straight),
                "collisions/optimal": collisions(optimal)}
