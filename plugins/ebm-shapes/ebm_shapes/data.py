"""Voxel shapes as data: ``procedural_shapes`` (boxes, cylinders, cones, tori and spheres of
random proportions and poses, made by code, labelled by class) and ``meshes`` (mesh files
voxelised: a folder of ``.off/.obj/.ply/.stl`` files, an archive of them, or CGAL's 138
models from Debian's ``libcgal-demo``).

An example is one occupancy grid ``(1, res, res, res)`` with values −1 (empty) and +1
(occupied): the layout of 3-D convolutions, centred like images in [−1, 1] so that the
samplers and generators of images apply unchanged. Samples are occupied where > 0.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Literal

import attrs
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
from ebmcore import Batch, Data, EbmError
from ebmcore import config as cfg
from ebmcore.kit.files import open_regular

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


class MeshData(VoxelData):
    """The meshes voxelised (each centred and scaled to fill 90 % of the grid); unlabelled.
    Files that cannot be read end the run naming the file."""

    @classmethod
    def from_config(cls, c: MeshesConfig, ctx=None) -> MeshData:
        files = mesh_files(c)
        g = torch.Generator().manual_seed(c.seed)
        shapes, names = [], []
        for name, load in files:
            vertices, faces = load()
            closed = is_closed(faces)
            if not closed and c.open_meshes == "skip":
                continue
            base = normalised(vertices)
            for r in range(c.rotations):
                v = base if r == 0 else normalised(base @ random_rotations(1, g)[0].double().numpy())
                shapes.append(voxelize_mesh(v, faces, c.res) if closed else surface_voxels(v, faces, c.res))
                names.append(name)
        meshes = sorted(set(names))
        if len(meshes) < 2:
            raise EbmError(f"{c.path or CGAL_ARCHIVE}: {len(meshes)} usable meshes (open ones skipped: "
                           f"open_meshes = 'skip'); a training and a held-out split need at least 2")
        k = max(2, round(1 / c.heldout))
        held_names = {m for i, m in enumerate(meshes) if i % k == k - 1}
        x = signed(torch.stack(shapes))
        held = torch.tensor([n in held_names for n in names])
        data = cls(x[~held], x[held], batch_size=c.batch_size, name=str(c.path or CGAL_ARCHIVE))
        data.mesh_names = [n for n in names if n not in held_names]
        return data
