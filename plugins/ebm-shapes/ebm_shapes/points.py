"""Point clouds as data: ``pointclouds``, N points drawn uniformly (by area) on the surfaces
of the procedural solids (boxes, cylinders, cones, tori, spheres of random proportions and
axis-aligned or, with ``rotate``, turned uniformly on SO(3); labelled by class; held-out
clouds from seed + 1), or of mesh files read through
:func:`ebm_shapes.data.mesh_files` (``path``). Each cloud is centred at its centroid and
scaled into the unit ball (its farthest point at distance 1). An example is a tensor
``(N, 3)``: unordered, rows are points.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from torch import Tensor

from ebm_shapes.chamfer import ChamferMetrics
from ebm_shapes.data import MeshesConfig, _classes, mesh_files
from ebm_shapes.meshes import (
    PRIMITIVES,
    primitive_mesh,
    primitive_parameters,
    random_rotations,
)
from ebmcore import Batch, Data, EbmError
from ebmcore import config as cfg
from ebmcore.kit.memory import tensor_bytes
from ebmcore.kit.streaming import DecodedStream, spaced

#: clouds shown in a picture of samples
SHOWN = 16


def surface_points(vertices: np.ndarray, faces: np.ndarray, n: int, g: torch.Generator) -> Tensor:
    """(n, 3) points uniform on a triangle mesh's surface: a triangle drawn by area, then a
    point uniform in it."""
    v = torch.as_tensor(vertices, dtype=torch.float64)
    tri = v[torch.as_tensor(faces, dtype=torch.int64)]  # (F, 3, 3)
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)
    if not float(area.sum()) > 0:
        raise EbmError("a mesh of zero area has no surface to sample")
    pick = tri[torch.multinomial(area / area.sum(), n, replacement=True, generator=g)]
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    flip = u.sum(1) > 1
    u[flip] = 1 - u[flip]
    p = pick[:, 0] + u[:, :1] * (pick[:, 1] - pick[:, 0]) + u[:, 1:] * (pick[:, 2] - pick[:, 0])
    return p.float()


def unit_ball(p: Tensor) -> Tensor:
    """(…, N, 3): each cloud centred at its centroid, its farthest point at distance 1."""
    p = p - p.mean(-2, keepdim=True)
    return p / p.norm(dim=-1).amax(-1)[..., None, None].clamp_min(1e-12)


def procedural_clouds(n: int, points: int, *, seed: int, classes: tuple[str, ...] = PRIMITIVES,
                      rotate: bool = False, segments: int = 32) -> tuple[Tensor, Tensor]:
    """``n`` clouds (n, points, 3) with labels (n,): class ``i % len(classes)`` for the i-th,
    random proportions (:func:`ebm_shapes.meshes.primitive_parameters`), in the primitive's
    own frame (axis-aligned: cylinders, cones and tori about z) or, with ``rotate``, under a
    rotation uniform on SO(3); ``points`` points on the surface, in the unit ball; all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(classes)
    rotations = random_rotations(n, g) if rotate else torch.eye(3).expand(n, 3, 3)
    out = torch.empty(n, points, 3)
    for i in range(n):
        kind = classes[int(labels[i])]
        vertices, faces = primitive_mesh(kind, primitive_parameters(kind, g), segments)
        out[i] = surface_points(vertices, faces, points, g) @ rotations[i].T
    return unit_ball(out), labels


def views_png(rows: list[Tensor], path: Path, *, titles: list[str] | None = None, columns: int = 4,
              size: float = 1.1) -> None:
    """Clouds (k, N, 3) as scatter plots from three directions (along z, y and x: panels
    x–y, x–z, y–z; colour: the coordinate along the view), three panels a cloud; ``rows`` of
    clouds are drawn one under another (a list of one batch: wrapped ``columns`` clouds a
    line). One axes for the whole picture, the panels side by side in it (cheap to draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if len(rows) == 1:
        x = rows[0][:SHOWN]
        rows = [x[i:i + columns] for i in range(0, len(x), columns)]
        titles = None
    width, height = 3 * max(len(r) for r in rows), len(rows)
    label = 0.9 if titles else 0.0
    fig = Figure(figsize=(width * size + label, height * size))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((label / (width * size + label), 0, 1 - label / (width * size + label), 1))
    px, py, colour = [], [], []
    for r, clouds in enumerate(rows):
        for c, cloud in enumerate(clouds.detach().cpu().float()):
            for k, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
                col, row = 3 * c + k, height - 1 - r
                px.append(cloud[:, a].clamp(-1.1, 1.1) * 0.45 + col + 0.5)
                py.append(cloud[:, b].clamp(-1.1, 1.1) * 0.45 + row + 0.5)
                colour.append(cloud[:, 3 - a - b])
                ax.add_patch(Rectangle((col + 0.02, row + 0.02), 0.96, 0.96, fill=False, lw=0.5,
                                       ec="0.7" if k else "0.3"))
        if titles:
            fig.text(0.01, (height - r - 0.5) / height, titles[r], fontsize=8, va="center")
    if px:
        ax.scatter(torch.cat(px).numpy(), torch.cat(py).numpy(), s=1.5, c=torch.cat(colour).numpy(),
                   cmap="viridis", vmin=-1, vmax=1, linewidths=0)
    ax.set_xlim(0, width), ax.set_ylim(0, height), ax.set_aspect("equal"), ax.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90)


class PointCloudData(Data):
    """Point clouds ``(N, 3)`` in the unit ball, optionally labelled; pictures from three
    directions; scored by :class:`ebm_shapes.chamfer.ChamferMetrics`."""

    def __init__(self, train: Tensor, heldout: Tensor, *, batch_size: int, labels: Tensor | None = None,
                 heldout_labels: Tensor | None = None, class_names: tuple[str, ...] | None = None):
        self.x, self._heldout, self.batch_size = train.contiguous(), heldout.contiguous(), batch_size
        self.labels, self.heldout_labels, self.class_names = labels, heldout_labels, class_names
        self.event_shape = tuple(train.shape[1:])
        self.num_classes = None if class_names is None else len(class_names)
        self._metrics: ChamferMetrics | None = None

    @classmethod
    def from_config(cls, c: PointCloudsConfig, ctx=None) -> PointCloudData:
        if c.path is not None:
            return _mesh_clouds(c)
        train, labels = procedural_clouds(c.n, c.points, seed=c.seed, classes=c.classes, rotate=c.rotate)
        held, held_labels = procedural_clouds(c.heldout, c.points, seed=c.seed + 1, classes=c.classes, rotate=c.rotate)
        return cls(train, held, batch_size=c.batch_size, labels=labels, heldout_labels=held_labels,
                   class_names=tuple(c.classes))

    def dataset(self) -> Batch:
        return Batch(self.x, None)

    def heldout(self) -> Batch | None:
        return Batch(self._heldout, self.heldout_labels)

    def save_samples(self, x: Tensor, path: Path) -> None:
        views_png([x], Path(path))

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        if self._metrics is None:
            self._metrics = ChamferMetrics(self.x, self._heldout)
        return self._metrics(samples)


def _points(_inst, _attr, value):
    if value < 2:
        raise ValueError(f"must be at least 2 points, got {value}")


@attrs.frozen
class PointCloudsConfig:
    """Points on the surfaces of the procedural solids (or of mesh files), in the unit ball."""

    points: int = attrs.field(default=256, validator=_points, metadata={"doc": "points per cloud (N)"})
    n: int = cfg.positive("training clouds (procedural: classes in turn)", default=500)
    heldout: int = cfg.positive("held-out clouds (procedural: drawn from seed + 1)", default=100)
    classes: tuple[str, ...] = attrs.field(default=PRIMITIVES, validator=_classes,
                                           metadata={"doc": f"the primitives, in label order (of {list(PRIMITIVES)})"})
    path: str | None = cfg.doc("instead of the solids: a folder or tar archive of .off/.obj/.ply/.stl meshes; "
                               "every k-th mesh by name held out (share heldout_share), n and heldout then "
                               "count clouds drawn per mesh in turn", default=None)
    heldout_share: float = attrs.field(default=0.2, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                                       metadata={"doc": "with path: the share of meshes held out"})
    rotate: bool = cfg.doc("turn each solid by a rotation uniform on SO(3); false: axis-aligned, as "
                           "GPointNet's ShapeNet clouds are (a pooled per-point energy sees the shape class "
                           "through where the points lie, which random poses scatter)", default=False)
    seed: int = cfg.non_negative("seed of the clouds (the held-out solids use seed + 1)", default=0)
    batch_size: int = cfg.positive("clouds per optimisation step", default=32)
    memory_mb: float = cfg.positive("with path: the most memory the training clouds may take (float32); more "
                                    "stream, drawn from the meshes batch by batch", default=2048.0)
    workers: int = cfg.non_negative("streamed clouds: processes drawing the next batches ahead of training "
                                    "(0: in the training process)", default=2)


class MeshClouds:
    """Cloud ``i`` of ``count``: ``points`` points on the surface of mesh ``i % len(meshes)``
    (turned uniformly on SO(3) with ``rotate``), in the unit ball; each cloud drawn from a
    seed of its own (``seed``, ``i``), so it is the same in memory and streamed."""

    def __init__(self, meshes: list[tuple[str, object]], count: int, *, points: int, rotate: bool, seed: int):
        self.meshes, self.count, self.points, self.rotate, self.seed = meshes, count, points, rotate, seed

    def __len__(self) -> int:
        return self.count

    def cloud(self, i: int, vertices: np.ndarray, faces: np.ndarray) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        turn = random_rotations(1, g)[0] if self.rotate else torch.eye(3)
        return unit_ball(surface_points(vertices, faces, self.points, g) @ turn.T)

    def __call__(self, i: int) -> Tensor:
        return self.cloud(i, *self.meshes[i % len(self.meshes)][1]())

    def all(self) -> Tensor:
        """Every cloud, each mesh read once."""
        out = torch.empty(self.count, self.points, 3)
        for m, (_, load) in enumerate(self.meshes[:self.count]):
            vertices, faces = load()
            for i in range(m, self.count, len(self.meshes)):
                out[i] = self.cloud(i, vertices, faces)
        return out


def _mesh_clouds(c: PointCloudsConfig) -> PointCloudData:
    files = mesh_files(MeshesConfig(path=c.path, heldout=c.heldout_share))
    if len(files) < 2:
        raise EbmError(f"{c.path}: {len(files)} meshes; a training and a held-out split need at least 2")
    k = max(2, round(1 / c.heldout_share))
    kw = {"points": c.points, "rotate": c.rotate}
    train = MeshClouds([f for i, f in enumerate(files) if i % k != k - 1], c.n, seed=c.seed, **kw)
    held = MeshClouds([f for i, f in enumerate(files) if i % k == k - 1], c.heldout, seed=c.seed + 1, **kw)
    cloud_bytes = tensor_bytes(c.points, 3)
    if c.n * cloud_bytes <= c.memory_mb * 2**20:
        return PointCloudData(train.all(), held.all(), batch_size=c.batch_size)
    each = max(2, int(c.memory_mb * 2**20 / 4 // cloud_bytes))  # 2: a Gaussian fits
    return StreamedClouds(train, spaced(train, each), spaced(held, each), batch_size=c.batch_size, workers=c.workers)


class StreamedClouds(PointCloudData):
    """Clouds of mesh files beyond ``memory_mb``, drawn batch by batch (a
    :class:`~ebmcore.kit.streaming.DecodedStream`); ``reference`` (training clouds spaced
    evenly) and ``heldout`` in memory for the metrics."""

    def __init__(self, clouds: MeshClouds, reference: Tensor, heldout: Tensor, *, batch_size: int, workers: int):
        super().__init__(reference, heldout, batch_size=batch_size)
        self.clouds, self.workers = clouds, workers

    def dataset(self) -> Batch:
        return Data.dataset(self)  # it streams: there is no in-memory training set

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> DecodedStream:
        return DecodedStream(self.clouds, None, batch_size=self.batch_size, rng=rng, rank=rank, world=world,
                             workers=self.workers, skip_hint="fix or remove the file")


__all__ = ["PointCloudData", "PointCloudsConfig", "procedural_clouds", "surface_points",
           "unit_ball", "views_png"]
