"""Trajectories as data: an example is one window ``(T, C)`` — T times, C channels — of which
a fixed part is *observed* (the context: the past of a motion, or a scene's start, goal and
obstacles) and the rest is to be completed. ``Batch.cond`` carries the observed mask (bool,
like x), so that an objective or a task holds exactly those entries fixed while sampling.

- ``mocap``: windows of motion capture (BVH, through :mod:`ebm_trajectory.io`, or CSV):
  ``past`` frames observed and ``future`` frames to forecast, at ``fps`` frames per second,
  the joints' positions made relative to the root's at the last observed frame; the held-out
  split is temporal (the last ``heldout`` share of each clip).
- ``navigation``: the synthetic 2-D world of :mod:`ebm_trajectory.navigation`, with its
  known cost; held-out scenes come from another seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import torch
from torch import Tensor

from ebm_trajectory import navigation as nav
from ebm_trajectory.io import joint_positions, read_bvh, read_csv
from ebm_trajectory.pictures import motion_png, scenes_png
from ebmcore import Batch, Data, EbmError
from ebmcore import config as cfg
from ebmcore.kit.metrics import beside, fitted_gaussian

#: Debian's assimp-testmodels ships three clips of motion capture as BVH
BVH_FOLDER = Path("/usr/share/assimp/models/BVH")
PACKAGE = "assimp-testmodels"
#: the named sets: the CMU clips (subject 1, 120 fps, one 31-joint skeleton) and a boxer (100 fps, 21 joints)
NAMED = {"cmu": ("01_01.bvh", "01_03.bvh"), "boxing": ("Boxing_Toes.bvh",)}


def spread(n: int, total: int) -> Tensor:
    """``n`` indices of ``total`` windows, evenly spread from the first to the last (repeating
    when n > total): a held-out split in time order is not one moment's motion."""
    return torch.linspace(0, total - 1, n).round().long()


class TrajectoryData(Data):
    """Windows ``(T, C)`` with a fixed observed part; ``cond`` of every batch is the mask."""

    def __init__(self, train: Tensor, heldout: Tensor, observed: Tensor, *, batch_size: int, name: str):
        self.x, self._heldout = train.float().contiguous(), heldout.float().contiguous()
        self.observed, self.batch_size, self.name = observed, batch_size, name
        self.event_shape = tuple(train.shape[1:])

    def dataset(self) -> Batch:
        return Batch(self.x, self.observed.expand(len(self.x), *self.observed.shape))

    def heldout(self) -> Batch:
        return Batch(self._heldout, self.observed.expand(len(self._heldout), *self.observed.shape))

    def overlapping(self, rows: Tensor) -> Tensor:
        """``(len(rows), N)`` bool: True where training window j shares a moment with training
        window ``rows[r]`` (every window shares its own): those are not retrieved for it, as
        no window of another time would be. Here each window is its own scene."""
        return rows[:, None] == torch.arange(len(self.x))


# -- motion capture --------------------------------------------------------------------------

def _fraction(_inst, _attr, value):
    if not 0 < value < 1:
        raise ValueError(f"must be in (0, 1), got {value}")


@attrs.frozen
class MocapConfig:
    """Motion-capture windows (past → future) from BVH or CSV files, or Debian's CMU clips."""

    name: Literal["cmu", "boxing"] | None = cfg.doc(
        "clips that install as a package (Debian's assimp-testmodels): 'cmu' (CMU subject 1: 01_01 and 01_03, "
        "60 s at 120 fps, 31 joints) or 'boxing' (Boxing_Toes, 31 s at 100 fps, 21 joints); or set files",
        default=None)
    files: tuple[str, ...] = cfg.doc("BVH (.bvh) or CSV (.csv: a row per frame, a column per channel) files; "
                                     "or set name", default=())
    csv_fps: float = cfg.positive("frames per second of CSV files", default=30.0)
    point_dims: int = cfg.positive("CSV files: coordinates per point (columns grouped in this many)", default=3)
    fps: float = cfg.positive("frames per second of the windows (the clips are subsampled to it)", default=10.0)
    past: int = attrs.field(default=10, validator=attrs.validators.ge(2),
                            metadata={"doc": "observed frames of each window (at least 2)"})
    future: int = cfg.positive("frames to forecast after them", default=10)
    stride: int = cfg.positive("source frames between the starts of consecutive windows", default=4)
    heldout: float = attrs.field(default=0.2, validator=_fraction,
                                 metadata={"doc": "the last share of each clip in time, held out"})
    relative: bool = cfg.doc("subtract the root's position at the last observed frame from every joint's "
                             "(CSV: the first point's), the up axis excepted", default=True)
    up: int | None = cfg.doc("the vertical axis left absolute by relative (BVH: 1, y); unset: none",
                             default=1)
    batch_size: int = cfg.positive("windows per optimisation step", default=64)

    def __attrs_post_init__(self):
        if (self.name is None) == (not self.files):
            raise ValueError("set exactly one of name (packaged clips) and files")
        if self.up is not None and not 0 <= self.up < self.point_dims:
            raise ValueError(f"up must be an axis below point_dims ({self.point_dims}), got {self.up}")


def _clip_points(path: Path, c: MocapConfig) -> tuple[Tensor, float, list[str]]:
    """``(frames, points, dims)`` of a file, its frame rate and its point names."""
    if path.suffix.lower() == ".bvh":
        motion = read_bvh(path)
        return joint_positions(motion), motion.fps, [j.name for j in motion.joints]
    if path.suffix.lower() == ".csv":
        table = read_csv(path)
        if table.shape[1] % c.point_dims:
            raise EbmError(f"{path}: {table.shape[1]} columns, not a multiple of point_dims = {c.point_dims}")
        points = table.shape[1] // c.point_dims
        return table.view(len(table), points, c.point_dims), c.csv_fps, [f"p{i}" for i in range(points)]
    raise EbmError(f"{path}: not a .bvh or .csv file")


def windows(points: Tensor, *, step: int, length: int, stride: int) -> Tensor:
    """Windows ``(N, length, points, dims)`` of every ``step``-th frame, starting every ``stride``."""
    span = (length - 1) * step + 1
    starts = range(0, len(points) - span + 1, stride)
    return torch.stack([points[s:s + span:step] for s in starts]) if len(starts) else points.new_zeros(
        0, length, *points.shape[1:])


class MocapData(TrajectoryData):
    """Windows ``(past + future, points × dims)`` in units of ``scale``; pictures over time."""

    def __init__(self, train, heldout, observed, *, batch_size, name, past, fps, scale, dims, names,
                 spans: Tensor):
        super().__init__(train, heldout, observed, batch_size=batch_size, name=name)
        self.past, self.fps, self.scale, self.dims, self.names = past, fps, scale, dims, names
        #: (N, 3): each training window's clip and its first and one-past-last source frames
        self.spans = spans
        # the channels that move most in the future, shown in pictures
        future = train[:, past:] - train[:, past - 1:past]
        self.shown = future.pow(2).mean((0, 1)).argsort(descending=True)[:3].tolist()
        self._sticks: dict[int, dict[str, float]] = {}
        self._reference = self._motion(self._heldout)

    @classmethod
    def from_config(cls, c: MocapConfig, ctx=None) -> MocapData:
        if c.name is not None:
            paths = [BVH_FOLDER / f for f in NAMED[c.name]]
            for p in paths:
                if not p.exists():
                    raise EbmError(f"{p}: not found; the clips '{c.name}' ship in Debian's {PACKAGE} package "
                                   f"(apt-get install {PACKAGE})")
        else:
            paths = [Path(f) for f in c.files]
        length = c.past + c.future
        train, held, spans, shape, names = [], [], [], None, None
        for clip, path in enumerate(paths):
            points, fps, point_names = _clip_points(path, c)
            if shape is not None and points.shape[1:] != shape:
                raise EbmError(f"{path}: {points.shape[1]} points of {points.shape[2]} coordinates, but "
                               f"{paths[0]} has {shape[0]} of {shape[1]}: the clips of one data set share a skeleton")
            shape, names = points.shape[1:], point_names
            step = max(1, round(fps / c.fps))
            cut = len(points) - max(1, round(c.heldout * len(points)))
            a = windows(points[:cut], step=step, length=length, stride=c.stride)
            b = windows(points[cut:], step=step, length=length, stride=c.stride)
            if not len(a) or not len(b):
                raise EbmError(f"{path}: {len(points)} frames at {fps:g} fps give {len(a)} training and {len(b)} "
                               f"held-out windows of {length} frames every {step}; each part needs one "
                               f"($.data.past, future, fps, heldout)")
            train.append(a)
            held.append(b)
            starts = torch.arange(len(a)) * c.stride
            spans.append(torch.stack([torch.full_like(starts, clip), starts, starts + (length - 1) * step + 1], 1))
        x, xh = torch.cat(train), torch.cat(held)
        if c.relative:
            keep = [d for d in range(x.shape[-1]) if d != c.up]
            for w in (x, xh):
                w[..., keep] -= w[:, c.past - 1:c.past, :1, keep]
        scale = float(x.std())
        observed = torch.zeros(length, x.shape[2] * x.shape[3], dtype=torch.bool)
        observed[:c.past] = True
        dims = x.shape[3]
        return cls(x.flatten(2) / scale, xh.flatten(2) / scale, observed, batch_size=c.batch_size,
                   name=c.name or ",".join(c.files), past=c.past, fps=c.fps, scale=scale, dims=dims,
                   names=[f"{n}.{'xyz'[d] if dims <= 3 else d}" for n in names for d in range(dims)],
                   spans=torch.cat(spans))

    def overlapping(self, rows: Tensor) -> Tensor:
        """True where two training windows of one clip share a source frame."""
        clip, start, end = self.spans[rows].T[:, :, None]
        c, s, e = self.spans.T[:, None]
        return (clip == c) & (start < e) & (s < end)

    def _motion(self, x: Tensor) -> Tensor:
        """(mean speed, mean acceleration) of the points over the free frames (and the step into them)."""
        p = x[:, self.past - 2:].reshape(len(x), x.shape[1] - self.past + 2, -1, self.dims).double()
        v = p[:, 1:] - p[:, :-1]
        return torch.stack([v.norm(dim=3).mean(), (v[:, 1:] - v[:, :-1]).norm(dim=3).mean()])

    def distance(self, x: Tensor) -> float:
        """Σ |log| of the ratios of the mean speed and acceleration of ``x`` to the held-out windows'."""
        return float((self._motion(x) / self._reference).clamp_min(1e-12).log().abs().sum())

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        """``motion``: how far the speed and acceleration of the forecasts are from the held-out
        futures' (0: the same), beside the training windows (floor), a Gaussian fitted to them
        and noise in the future frames."""
        n = len(samples)
        if n < 1:
            return {}
        if n not in self._sticks:
            g = torch.Generator().manual_seed(0)
            train = self.x[torch.randperm(len(self.x), generator=g)[:n]]
            noise = torch.where(self.observed, train, torch.randn(train.shape, generator=g))
            self._sticks[n] = {"heldout": self.distance(train), "noise": self.distance(noise),
                               "gaussian": self.distance(fitted_gaussian(self.x, n, rng=g))}
        return beside("motion", self.distance(samples), self._sticks[n])

    def save_samples(self, x: Tensor, path: Path) -> None:
        motion_png(x * self.scale, {}, Path(path), past=self.past, fps=self.fps, channels=self.shown,
                   names=[self.names[c] for c in self.shown])


# -- navigation ------------------------------------------------------------------------------

@attrs.frozen
class NavigationConfig:
    """Synthetic 2-D navigation: start, goal, circular obstacles; an expert minimising a known cost."""

    n: int = cfg.positive("training scenes (each with one demonstration)", default=1000)
    heldout: int = cfg.positive("held-out scenes (another seed)", default=200)
    length: int = attrs.field(default=16, validator=attrs.validators.ge(3),
                              metadata={"doc": "points of each trajectory, start and goal included"})
    obstacles: int = cfg.positive("circular obstacles per scene", default=3)
    temperature: float = cfg.non_negative(
        "τ of the noisy-rational expert exp(−c/τ) the demonstrations are drawn from (Langevin from the "
        "optimal plan); 0: the optimal plans themselves", default=0.01)
    seed: int = cfg.non_negative("seed of the training scenes (held-out: seed + 1)", default=0)
    batch_size: int = cfg.positive("scenes per optimisation step", default=64)


class NavigationData(TrajectoryData):
    """Scenes ``(T, 2 + 3K)``; the true cost and the expert's optimal plans are known."""

    def __init__(self, train, heldout, observed, *, batch_size, optimal_heldout: Tensor, temperature: float):
        super().__init__(train, heldout, observed, batch_size=batch_size, name="navigation")
        self.optimal_heldout, self.temperature = optimal_heldout, temperature

    @classmethod
    def from_config(cls, c: NavigationConfig, ctx=None) -> NavigationData:
        made = []
        for n, seed in ((c.n, c.seed), (c.heldout, c.seed + 1)):
            start, goal, obstacles = nav.scenes(n, obstacles=c.obstacles, seed=seed)
            g = torch.Generator().manual_seed(seed)
            optimal = nav.plan(start.double(), goal.double(), obstacles.double(), c.length, rng=g)
            demo = nav.noisy_rational(optimal, obstacles.double(), c.temperature, steps=1000, rng=g)
            made.append((nav.pack(demo, obstacles.double()), optimal))
        (train, _), (held, optimal_held) = made
        return cls(train, held, nav.observed_mask(c.length, c.obstacles), batch_size=c.batch_size,
                   optimal_heldout=optimal_held.float(), temperature=c.temperature)

    @staticmethod
    def optimal(x: Tensor) -> Tensor:
        """The expert's optimal plans ``(n, T, 2)`` in the scenes of ``x``."""
        start, goal = x[:, 0, :2].double(), x[:, -1, :2].double()
        _, obstacles = nav.unpack(x.double())
        return nav.plan(start, goal, obstacles, x.shape[1], rng=torch.Generator().manual_seed(0)).float()

    @staticmethod
    def true_cost(x: Tensor) -> Tensor:
        paths, obstacles = nav.unpack(x.double())
        return nav.cost(paths, obstacles).float()

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        """``excess_cost``: the mean true cost of the sampled paths above the expert's optimum
        in their scenes, beside the held-out demonstrations' (the floor: τ·dof/2 for a
        noisy-rational expert), the straight lines' and random paths' (the ceiling)."""
        if len(samples) < 1:
            return {}
        x = samples.detach().cpu()
        paths, obstacles = nav.unpack(x)
        best = nav.cost(self.optimal(x).double(), obstacles.double())

        def excess(p: Tensor) -> float:
            return float((nav.cost(p.double(), obstacles.double()) - best).mean())

        g = torch.Generator().manual_seed(0)
        line = nav.straight(paths[:, 0], paths[:, -1], x.shape[1])
        noise = torch.where(self.observed[:, :2], paths, torch.rand(paths.shape, generator=g) * 2 - 1)
        held = self._heldout[:len(x)]
        demo_excess = float((self.true_cost(held).double()
                             - nav.cost(self.optimal_heldout[:len(x)].double(), nav.unpack(held.double())[1])).mean())
        return beside("excess_cost", excess(paths), {"heldout": demo_excess, "straight": excess(line),
                                                     "noise": excess(noise)})

    def save_samples(self, x: Tensor, path: Path) -> None:
        paths, obstacles = nav.unpack(x.detach().cpu())
        scenes_png({"sample": paths}, obstacles, Path(path))

    def report(self, out_dir: Path, samples: Tensor, energy) -> list[Path]:
        """``expert.png``: the demonstrations and the optimal plans of held-out scenes."""
        path = Path(out_dir) / "expert.png"
        paths, obstacles = nav.unpack(self._heldout)
        scenes_png({"optimal": self.optimal_heldout, "demonstration": paths}, obstacles, path)
        return [path]
