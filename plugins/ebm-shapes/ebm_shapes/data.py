"""Voxel shapes as data: ``procedural_shapes`` (boxes, cylinders, cones, tori and spheres of
random proportions and poses, made by code, labelled by class) and ``meshes`` (mesh files
voxelised: a folder of ``.off/.obj/.ply/.stl`` files, an archive of them, or CGAL's 138
models from Debian's ``libcgal-demo``).

An example is one occupancy grid ``(1, res, res, res)`` with values −1 (empty) and +1
(occupied): the layout of 3-D convolutions, centred like images in [−1, 1] so that the
samplers and generators of images apply unchanged. Samples are occupied where > 0.
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from ebm_shapes.meshes import (
    MAX_BYTES,
    MESH_SUFFIXES,
    PRIMITIVES,
    is_closed,
    normalised,
    parse_mesh,
    procedural_shapes,
    random_rotations,
    read_mesh,
    surface_voxels,
    voxelize_mesh,
)
from ebm_shapes.metrics import ShapeMetrics
from ebm_shapes.pictures import views_png, voxels_png
from ebmcore import Batch, Data, EbmError, Stream
from ebmcore import config as cfg
from ebmcore.kit.files import open_regular
from ebmcore.kit.memory import tensor_bytes
from ebmcore.kit.streaming import Counted, DecodedStream, spaced

#: Debian's libcgal-demo ships CGAL's example data, 138 .off models under data/meshes/, in this archive
CGAL_ARCHIVE = Path("/usr/share/doc/libcgal-dev/data.tar.gz")
CGAL_PACKAGE = "libcgal-demo"


def _res(_inst, _attr, value):
    if value < 4 or value % 2:
        raise ValueError(f"must be an even number of cells ≥ 4, got {value}")


def _classes(_inst, _attr, value):
    unknown = [c for c in value if c not in PRIMITIVES]
    if not value or unknown or len(set(value)) != len(value):
        raise ValueError(f"must be distinct primitives of {list(PRIMITIVES)}, got {list(value)}")


def signed(occupancy: Tensor) -> Tensor:
    """Occupancy (N, R, R, R) bool → (N, 1, R, R, R) float: +1 occupied, −1 empty."""
    return occupancy.float().mul(2).sub(1).unsqueeze(1)


class VoxelData(Data):
    """Occupancy grids ``(1, R, R, R)`` in {−1, +1}, optionally labelled; pictures of shapes
    turned and shaded (and, at the end, depth maps along the three axes: ``samples_views.png``); scored by :class:`ebm_shapes.metrics.ShapeMetrics`."""

    def __init__(self, train: Tensor, heldout: Tensor, *, batch_size: int, labels: Tensor | None = None,
                 heldout_labels: Tensor | None = None, class_names: tuple[str, ...] | None = None,
                 conditional: bool = False, name: str = "shapes"):
        self.x, self._heldout, self.batch_size, self.name = train.contiguous(), heldout, batch_size, name
        self.labels, self.heldout_labels, self.class_names = labels, heldout_labels, class_names
        self.event_shape = tuple(train.shape[1:])
        self.num_classes = None if class_names is None else len(class_names)
        if conditional and labels is None:
            raise EbmError(f"{name}: conditional = true needs labelled shapes, these have no classes")
        self.conditional = conditional
        self._metrics: ShapeMetrics | None = None

    @property
    def res(self) -> int:
        return self.event_shape[-1]

    def dataset(self) -> Batch:
        return Batch(self.x, self.labels if self.conditional else None)

    def heldout(self) -> Batch | None:
        return Batch(self._heldout, self.heldout_labels)

    def save_samples(self, x: Tensor, path: Path) -> None:
        voxels_png(x, Path(path))

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        if self._metrics is None:
            self._metrics = ShapeMetrics(self.x, self._heldout)
        return self._metrics(samples)

    def report(self, out_dir: Path, samples: Tensor, energy) -> list[Path]:
        path = Path(out_dir) / "samples_views.png"
        views_png(samples, path)
        return [path]


# -- procedural ---------------------------------------------------------------------------

@attrs.frozen
class ShapesConfig:
    """Procedural solids made by code: boxes, cylinders, cones, tori, spheres; random proportions and poses."""

    res: int = attrs.field(default=32, validator=_res, metadata={"doc": "cells a side of the occupancy grid"})
    n: int = cfg.positive("training shapes (classes in turn: as many of each)", default=500)
    heldout: int = cfg.positive("held-out shapes (drawn from seed + 1)", default=100)
    classes: tuple[str, ...] = attrs.field(default=PRIMITIVES, validator=_classes,
                                           metadata={"doc": f"the primitives, in label order (of {list(PRIMITIVES)})"})
    shift: float = attrs.field(default=0.05, validator=[attrs.validators.ge(0), attrs.validators.le(0.05)],
                               metadata={"doc": "largest shift of a shape's centre along each axis (≤ 0.05: "
                                                "the shapes stay inside the grid)"})
    seed: int = cfg.non_negative("seed of the training shapes (the held-out ones use seed + 1)", default=0)
    conditional: bool = cfg.doc("training batches carry the class labels (a label-conditional model)",
                                default=False)
    batch_size: int = cfg.positive("shapes per optimisation step", default=32)


class ShapesData(VoxelData):
    @classmethod
    def from_config(cls, c: ShapesConfig, ctx=None) -> ShapesData:
        train, labels = procedural_shapes(c.n, c.res, seed=c.seed, classes=c.classes, shift=c.shift)
        held, held_labels = procedural_shapes(c.heldout, c.res, seed=c.seed + 1, classes=c.classes, shift=c.shift)
        return cls(signed(train), signed(held), batch_size=c.batch_size, labels=labels, heldout_labels=held_labels,
                   class_names=tuple(c.classes), conditional=c.conditional, name="shapes")


# -- meshes -------------------------------------------------------------------------------

@attrs.frozen
class MeshesConfig:
    """Mesh files voxelised: a folder or archive of .off/.obj/.ply/.stl files, or CGAL's models (libcgal-demo)."""

    path: str | None = cfg.doc("a folder of mesh files (searched recursively) or a tar archive of them "
                               "(.tar, .tar.gz); or set name", default=None)
    name: Literal["cgal"] | None = cfg.doc(
        f"a set that installs as a package: 'cgal' (CGAL's example models, {CGAL_ARCHIVE}, Debian's "
        f"{CGAL_PACKAGE}: 138 .off files)", default=None)
    res: int = attrs.field(default=32, validator=_res, metadata={"doc": "cells a side of the occupancy grid"})
    open_meshes: Literal["skip", "surface"] = cfg.doc(
        "meshes that do not close (no inside): 'skip' them, or keep their 'surface' cells (a shell)",
        default="skip")
    rotations: int = cfg.positive("copies of each mesh, each under its own random rotation (1: as filed)",
                                  default=1)
    heldout: float = attrs.field(default=0.2, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                                 metadata={"doc": "share of the meshes held out (every k-th in name order, "
                                                  "with all their rotations)"})
    seed: int = cfg.non_negative("seed of the rotations", default=0)
    batch_size: int = cfg.positive("shapes per optimisation step", default=32)
    memory_mb: float = cfg.positive("the most memory the training grids may take (float32); a larger set "
                                    "streams: the meshes are read and voxelised batch by batch", default=2048.0)
    workers: int = cfg.non_negative("a streamed set: processes voxelising the next batches ahead of training "
                                    "(0: in the training process)", default=2)
    on_bad_file: Literal["stop", "skip"] = cfg.doc(
        "a mesh file that cannot be read: 'stop' with an error naming it, or 'skip' it (counted as "
        "data/skipped_files in the metrics)", default="stop")

    def __attrs_post_init__(self):
        if (self.path is None) == (self.name is None):
            raise ValueError("set exactly one of path (a folder or archive of meshes) and name (a packaged set)")


def _archive_meshes(path: Path) -> list[tuple[str, bytes, str]]:
    try:  # a FIFO, a device or a folder is refused before tarfile reads it
        with open_regular(path, what="a mesh archive") as f, tarfile.open(fileobj=f) as tar:
            out = []
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                suffix = Path(member.name).suffix.lower()
                if member.isfile() and suffix in MESH_SUFFIXES:
                    if member.size > MAX_BYTES:
                        raise EbmError(f"{path}: {member.name} is larger than the {MAX_BYTES >> 20} MiB a mesh may be")
                    out.append((f"{path}:{member.name}", tar.extractfile(member).read(), suffix[1:]))
            return out
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EbmError(f"{path}: not a readable tar archive ({exc})") from None


def mesh_files(c: MeshesConfig) -> list[tuple[str, object]]:
    """(name, loader) of every mesh of the config, in name order; a loader gives (vertices, faces)."""
    if c.name is not None:
        path = CGAL_ARCHIVE
        if not path.exists():
            raise EbmError(f"{path}: not found; CGAL's models ship in Debian's {CGAL_PACKAGE} package "
                           f"(apt-get install {CGAL_PACKAGE}, or without its dependencies: apt-get download "
                           f"{CGAL_PACKAGE} && dpkg -x {CGAL_PACKAGE}_*.deb /)")
    else:
        path = Path(c.path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and not p.is_dir())
        out = [(str(p), lambda p=p: read_mesh(p)) for p in files]
    elif path.exists():
        members = _archive_meshes(path)
        if c.name is not None:  # CGAL's archive holds other data too: only the .off models of its meshes folder
            members = [m for m in members if "/meshes/" in m[0] and m[2] == "off"]
        out = [(n, lambda d=d, t=t, n=n: parse_mesh(d, t, n)) for n, d, t in members]
    else:
        raise EbmError(f"{path}: no such folder or archive")
    if not out:
        raise EbmError(f"{path}: no mesh files in it (the suffixes read are {', '.join(MESH_SUFFIXES)})")
    return out


def mesh_rotation(seed: int, name: str, r: int) -> np.ndarray | None:
    """The ``r``-th rotation of the mesh ``name`` (None for r = 0: as filed): drawn from a seed
    of its own, so a mesh turns the same in memory and streamed, whatever else the set holds."""
    if r == 0:
        return None
    key = int.from_bytes(hashlib.sha256(f"{seed}/{name}/{r}".encode()).digest()[:8], "little")
    return random_rotations(1, torch.Generator().manual_seed(key))[0].double().numpy()


def mesh_grid(vertices: np.ndarray, faces: np.ndarray, closed: bool, res: int, turn: np.ndarray | None) -> Tensor:
    """The occupancy (res, res, res) of a mesh centred and scaled to fill 90 % of the grid
    after the rotation ``turn``: its inside, or for an open mesh its surface's cells."""
    v = normalised(vertices)
    if turn is not None:
        v = normalised(v @ turn)
    return voxelize_mesh(v, faces, res) if closed else surface_voxels(v, faces, res)


class MeshVoxels:
    """Example ``i`` of the meshes ``(name, load, closed)``: mesh ``i // rotations`` under
    its rotation ``i % rotations``, voxelised ``(1, res, res, res)`` in {−1, +1} (the file read
    again: a streamed set holds only the names)."""

    def __init__(self, meshes: list[tuple[str, object, bool]], *, res: int, rotations: int, seed: int):
        self.meshes, self.res, self.rotations, self.seed = meshes, res, rotations, seed

    def __len__(self) -> int:
        return len(self.meshes) * self.rotations

    def __call__(self, i: int) -> Tensor:
        (name, load, closed), r = self.meshes[i // self.rotations], i % self.rotations
        vertices, faces = load()
        return signed(mesh_grid(vertices, faces, closed, self.res, mesh_rotation(self.seed, name, r))[None])[0]


class MeshData(VoxelData):
    """The meshes voxelised (each centred and scaled to fill 90 % of the grid); unlabelled.
    A file that cannot be read ends the run naming it, or is skipped (``on_bad_file``). A set
    whose grids exceed ``memory_mb`` streams (:class:`StreamedMeshes`)."""

    def __init__(self, *args, skipped_files: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_files = skipped_files  # None: on_bad_file = "stop"

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> Stream:
        if self.skipped_files is None:
            return super().stream(rng, rank=rank, world=world)
        return Counted(self.dataset(), self.batch_size, rng, rank, world, skipped=self.skipped_files)

    @classmethod
    def from_config(cls, c: MeshesConfig, ctx=None) -> VoxelData:
        files = mesh_files(c)
        grid_bytes = tensor_bytes(c.res, c.res, c.res)
        streams = len(files) * c.rotations * grid_bytes > c.memory_mb * 2**20
        usable, grids, skipped = [], [], 0
        for name, load in files:  # every mesh read once: which are readable and closed (and, in memory, the grids)
            try:
                vertices, faces = load()
            except EbmError as exc:
                if c.on_bad_file == "stop":
                    raise EbmError(f'{exc} (data.on_bad_file = "skip" trains on without it)') from None
                skipped += 1
                continue
            closed = is_closed(faces)
            if not closed and c.open_meshes == "skip":
                continue
            usable.append((name, load, closed))
            if not streams:
                grids += [mesh_grid(vertices, faces, closed, c.res, mesh_rotation(c.seed, name, r))
                          for r in range(c.rotations)]
        if skipped:
            print(f"warning: {skipped} of {len(files)} meshes in {c.path or CGAL_ARCHIVE} cannot be read and are "
                  f"skipped", file=sys.stderr)
        if len(usable) < 2:
            raise EbmError(f"{c.path or CGAL_ARCHIVE}: {len(usable)} usable meshes (open ones skipped: "
                           f"open_meshes = 'skip'); a training and a held-out split need at least 2")
        k = max(2, round(1 / c.heldout))
        held = [i % k == k - 1 for i in range(len(usable))]  # every k-th mesh by name
        counted = skipped if c.on_bad_file == "skip" else None
        if streams:
            kw = {"res": c.res, "rotations": c.rotations, "seed": c.seed}
            train = MeshVoxels([m for m, h in zip(usable, held, strict=True) if not h], **kw)
            test = MeshVoxels([m for m, h in zip(usable, held, strict=True) if h], **kw)
            each = max(2, min(METRIC_SHAPES, int(c.memory_mb * 2**20 / 4 // grid_bytes)))  # 2: a Gaussian fits
            return StreamedMeshes(train, spaced(train, each), spaced(test, each), c, skipped_files=counted)
        x = signed(torch.stack(grids))
        mask = torch.tensor(held).repeat_interleave(c.rotations)
        return cls(x[~mask], x[mask], batch_size=c.batch_size, name=str(c.path or CGAL_ARCHIVE), skipped_files=counted)


#: shapes of a streamed set voxelised for its metrics, training and held-out each (at most)
METRIC_SHAPES = 256


class StreamedMeshes(VoxelData):
    """The training meshes as a :class:`~ebmcore.kit.streaming.DecodedStream` voxelised by its
    workers; ``reference`` (training shapes spaced evenly) and ``heldout`` in memory for the
    metrics."""

    def __init__(self, meshes: MeshVoxels, reference: Tensor, heldout: Tensor, c: MeshesConfig, *,
                 skipped_files: int | None):
        super().__init__(reference, heldout, batch_size=c.batch_size, name=str(c.path or CGAL_ARCHIVE))
        self.meshes, self.c, self.skipped_files = meshes, c, skipped_files

    def dataset(self) -> Batch:
        return Data.dataset(self)  # it streams: there is no in-memory training set

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> DecodedStream:
        return DecodedStream(self.meshes, None, batch_size=self.batch_size, rng=rng, rank=rank, world=world,
                             workers=self.c.workers, skip_bad=self.skipped_files is not None,
                             skipped=self.skipped_files or 0)
