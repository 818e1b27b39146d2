"""Meshes and solids as occupancy grids: mesh files read through trimesh (``.off``, ``.obj``,
``.ply``, ``.stl``, or members of an archive), a voxeliser of closed triangle meshes, and the
procedural primitives (boxes, cylinders, cones, tori, spheres) made by code.

A voxel grid has ``res`` cells a side over the cube [−1, 1]³; cell (i, j, k) is the cube
around the point ((i + ½)·2/res − 1, …), indexed ``[x, y, z]``. A cell is occupied when its
centre is inside the solid.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ebmcore import EbmError
from ebmcore.kit.files import read_regular

#: the file types read (through trimesh)
MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl")
#: the largest mesh file read
MAX_BYTES = 256 << 20
#: the procedural classes, in label order
PRIMITIVES = ("box", "cylinder", "cone", "torus", "sphere")


def parse_off(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An OFF file (``OFF``/``COFF``/``NOFF``… header; polygons fanned into triangles, colours
    after the indices ignored), read here: trimesh refuses some of CGAL's (polygons with colours)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise EbmError(f"{name}: not a mesh (an OFF file is ASCII text; binary OFF is not read)") from None
    tokens = [line.split("#", 1)[0].split() for line in text.splitlines()]
    lines = [t for t in tokens if t]
    if not lines or not lines[0][0].endswith("OFF"):
        raise EbmError(f"{name}: not a mesh (an OFF file starts with 'OFF')")
    head = lines[0][1:] if len(lines[0]) > 1 else lines[1]
    body = lines[1:] if len(lines[0]) > 1 else lines[2:]
    try:
        nv, nf = int(head[0]), int(head[1])
        if nv < 3 or nf < 1 or len(body) < nv + nf:
            raise ValueError(f"{nv} vertices and {nf} faces announced, {len(body)} lines follow")
        vertices = np.array([[float(v) for v in row[:3]] for row in body[:nv]], dtype=np.float64)
        faces = []
        for row in body[nv:nv + nf]:
            k = int(row[0])
            idx = [int(i) for i in row[1:1 + k]]
            if k < 3 or len(idx) != k:
                raise ValueError(f"a face of {k} corners: {' '.join(row)}")
            faces += [(idx[0], idx[j], idx[j + 1]) for j in range(1, k - 1)]
    except (ValueError, IndexError) as exc:
        raise EbmError(f"{name}: a corrupt OFF file ({exc})") from None
    return _checked(vertices, np.array(faces, dtype=np.int64).reshape(-1, 3), name)


def _checked(vertices: np.ndarray, faces: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(faces) == 0 or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise EbmError(f"{name}: no triangles in it (not a mesh, or an empty one)")
    if not np.isfinite(vertices).all() or faces.min() < 0 or faces.max() >= len(vertices):
        raise EbmError(f"{name}: a corrupt mesh (non-finite vertices or faces naming missing vertices)")
    return vertices, faces


def parse_mesh(data: bytes, file_type: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, faces (F, 3) int64) of the mesh in ``data`` (a ``file_type``
    file, e.g. "off"); :class:`EbmError` naming ``name`` if it is not a triangle mesh. OFF is
    read by :func:`parse_off`, the others by trimesh."""
    if file_type == "off":
        return parse_off(data, name)
    import trimesh

    try:
        mesh = trimesh.load(io.BytesIO(data), file_type=file_type, force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 (trimesh raises anything from ValueError to IndexError on bad files)
        raise EbmError(f"{name}: not a mesh trimesh can read as .{file_type} ({type(exc).__name__}: {exc})") from None
    if not isinstance(mesh, trimesh.Trimesh):  # an empty scene, a point cloud
        raise EbmError(f"{name}: no triangles in it (not a mesh, or an empty one)")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    return _checked(vertices, faces.reshape(-1, 3) if faces.size else faces.reshape(0, 3), name)


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The triangle mesh in the file ``path`` (one of :data:`MESH_SUFFIXES`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise EbmError(f"{path}: not a mesh file (the suffixes read are {', '.join(MESH_SUFFIXES)})")
    return parse_mesh(read_regular(path, limit=MAX_BYTES, what="a mesh"), suffix[1:], str(path))


def normalised(vertices: np.ndarray, extent: float = 0.9) -> np.ndarray:
    """The vertices moved and scaled uniformly so that their bounding box is centred at the
    origin and its longest side spans [−extent, extent]."""
    lo, hi = vertices.min(0), vertices.max(0)
    half = max(float((hi - lo).max()) / 2, 1e-12)
    return (vertices - (lo + hi) / 2) * (extent / half)


def centres(res: int) -> Tensor:
    """The cell centres of a ``res``³ grid over [−1, 1]³, (res, res, res, 3) float32, [x, y, z]."""
    c = (torch.arange(res, dtype=torch.float32) + 0.5) * (2 / res) - 1
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)


def voxelize_mesh(vertices: np.ndarray, faces: np.ndarray, res: int, *, chunk: int = 4096) -> Tensor:
    """Occupancy (res, res, res) bool of a closed mesh (vertices in [−1, 1]³) by ray parity:
    along each column of cells parallel to z, a cell is inside when an odd number of the
    surface's crossings lie below its centre. Columns are shifted by a tiny irrational
    amount so that no ray meets an edge or vertex exactly. An open mesh gives streaks."""
    tri = torch.as_tensor(vertices[faces], dtype=torch.float64)  # (F, 3 corners, 3)
    step = 2 / res
    c = (torch.arange(res, dtype=torch.float64) + 0.5) * step - 1
    px, py = torch.meshgrid(c + 1.234567e-5, c + 2.345671e-5, indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)  # (res², ) columns
    counts = torch.zeros(res * res, res + 1, dtype=torch.int32)
    for part in tri.split(chunk):
        a, b, d = part[:, 0], part[:, 1], part[:, 2]
        # barycentric coordinates of every column in every triangle's xy projection
        det = (b[:, 0] - a[:, 0]) * (d[:, 1] - a[:, 1]) - (d[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        ok = det.abs() > 1e-18
        part, a, b, d, det = part[ok], a[ok], b[ok], d[ok], det[ok]
        if not len(part):
            continue
        # only columns inside each triangle's bounding box can be hit: test those pairs
        lo, hi = part[:, :, :2].amin(1), part[:, :, :2].amax(1)
        i0 = ((lo[:, 0] + 1) / step - 0.5).ceil().clamp(0, res).long()
        i1 = ((hi[:, 0] + 1) / step - 0.5).floor().clamp(-1, res - 1).long()
        j0 = ((lo[:, 1] + 1) / step - 0.5).ceil().clamp(0, res).long()
        j1 = ((hi[:, 1] + 1) / step - 0.5).floor().clamp(-1, res - 1).long()
        ni, nj = (i1 - i0 + 1).clamp(min=0), (j1 - j0 + 1).clamp(min=0)
        # pad each box by one column on each side (the shift of the columns), then enumerate
        i0, j0, ni, nj = (i0 - 1).clamp(min=0), (j0 - 1).clamp(min=0), ni + 2, nj + 2
        sizes = ni * nj
        which = torch.repeat_interleave(torch.arange(len(part)), sizes)
        if not len(which):
            continue
        offset = torch.arange(len(which)) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
        ci = i0[which] + offset // nj[which]
        cj = j0[which] + offset % nj[which]
        keep = (ci < res) & (cj < res)
        which, col = which[keep], (ci * res + cj)[keep]
        x, y = px[col], py[col]
        aw, bw, dw, dt = a[which], b[which], d[which], det[which]
        u = ((x - aw[:, 0]) * (dw[:, 1] - aw[:, 1]) - (dw[:, 0] - aw[:, 0]) * (y - aw[:, 1])) / dt
        v = ((bw[:, 0] - aw[:, 0]) * (y - aw[:, 1]) - (x - aw[:, 0]) * (bw[:, 1] - aw[:, 1])) / dt
        hit = (u >= 0) & (v >= 0) & (u + v <= 1)
        z = aw[:, 2] + u * (bw[:, 2] - aw[:, 2]) + v * (dw[:, 2] - aw[:, 2])
        z, col = z[hit], col[hit]
        # the first cell whose centre lies above the crossing
        k = ((z + 1) / step - 0.5).floor().long().add(1).clamp(0, res)
        counts.index_put_((col, k), torch.ones_like(k, dtype=torch.int32), accumulate=True)
    inside = counts.cumsum(1)[:, :res] % 2 == 1
    return inside.view(res, res, res)


def surface_voxels(vertices: np.ndarray, faces: np.ndarray, res: int, *, seed: int = 0) -> Tensor:
    """The cells the surface passes through (a shell), found by points spread over the
    triangles (about 16 per cell of surface area): for open meshes, which have no inside."""
    tri = torch.as_tensor(vertices[faces], dtype=torch.float64)
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1) / 2
    cell = (2 / res) ** 2
    n = int(min(4_000_000, max(1000, 16 * float(area.sum()) / cell)))
    g = torch.Generator().manual_seed(seed)
    which = torch.multinomial(area.float() + 1e-12, n, replacement=True, generator=g)
    r = torch.rand(n, 2, generator=g, dtype=torch.float64)
    flip = r.sum(1) > 1
    r[flip] = 1 - r[flip]
    t = tri[which]
    p = t[:, 0] + r[:, :1] * (t[:, 1] - t[:, 0]) + r[:, 1:] * (t[:, 2] - t[:, 0])
    idx = ((p + 1) / (2 / res)).floor().long().clamp(0, res - 1)
    out = torch.zeros(res, res, res, dtype=torch.bool)
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return out


def is_closed(faces: np.ndarray) -> bool:
    """Every edge is shared by exactly two faces (a closed surface; orientation not checked)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


# -- procedural primitives ----------------------------------------------------------------

def random_rotations(n: int, g: torch.Generator) -> Tensor:
    """``n`` rotation matrices (n, 3, 3) uniform on SO(3) (from unit quaternions)."""
    q = torch.randn(n, 4, generator=g)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(n, 3, 3)


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def primitive_parameters(kind: str, g: torch.Generator) -> Tensor:
    """Random proportions of one primitive, each small enough that the solid stays within a
    ball of radius 0.95 about its centre."""
    if kind == "box":  # half-extents
        return _uniform(g, 0.25, 0.53, 3)
    if kind == "cylinder":  # radius, half-height
        return torch.cat([_uniform(g, 0.25, 0.55), _uniform(g, 0.3, 0.7)])
    if kind == "cone":  # base radius, half-height
        return torch.cat([_uniform(g, 0.35, 0.65), _uniform(g, 0.4, 0.65)])
    if kind == "torus":  # ring radius, tube radius
        return torch.cat([_uniform(g, 0.45, 0.65), _uniform(g, 0.15, 0.28)])
    if kind == "sphere":  # semi-axes (a sphere of random proportions: an ellipsoid)
        return _uniform(g, 0.4, 0.85, 3)
    raise ValueError(f"unknown primitive {kind!r} (known: {', '.join(PRIMITIVES)})")


def inside(kind: str, p: Tensor, params: Tensor) -> Tensor:
    """Whether the points ``p`` (..., 3), in the primitive's own frame, are inside it."""
    x, y, z = p.unbind(-1)
    if kind == "box":
        return (p.abs() <= params).all(-1)
    if kind == "cylinder":
        r, h = params.tolist()
        return (x * x + y * y <= r * r) & (z.abs() <= h)
    if kind == "cone":  # apex at z = +h, base at z = −h
        r, h = params.tolist()
        radius = r * (h - z) / (2 * h)
        return (z.abs() <= h) & ((x * x + y * y).sqrt() <= radius)
    if kind == "torus":
        big, small = params.tolist()
        return ((x * x + y * y).sqrt() - big) ** 2 + z * z <= small * small
    if kind == "sphere":
        return ((p / params) ** 2).sum(-1) <= 1
    raise ValueError(f"unknown primitive {kind!r} (known: {', '.join(PRIMITIVES)})")


def procedural_shapes(n: int, res: int, *, seed: int, classes: tuple[str, ...] = PRIMITIVES,
                      shift: float = 0.05) -> tuple[Tensor, Tensor]:
    """``n`` solids (n, res, res, res) bool with labels (n,) int64: class ``i % len(classes)``
    for the i-th, random proportions (:func:`primitive_parameters`), a rotation uniform on
    SO(3) and a shift of the centre by up to ``shift`` along each axis; all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    grid = centres(res).view(-1, 3)
    labels = torch.arange(n) % len(classes)
    rotations = random_rotations(n, g)
    out = torch.empty(n, res, res, res, dtype=torch.bool)
    for i in range(n):
        kind = classes[int(labels[i])]
        params = primitive_parameters(kind, g)
        centre = (torch.rand(3, generator=g) * 2 - 1) * shift
        local = (grid - centre) @ rotations[i]  # rows: Rᵀ(p − c), the point in the shape's frame
        out[i] = inside(kind, local, params).view(res, res, res)
    return out, labels


def primitive_mesh(kind: str, params: Tensor, segments: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A closed triangle mesh of a primitive in its own frame (for writing test files)."""
    import trimesh

    p = [float(v) for v in params]
    if kind == "box":
        mesh = trimesh.creation.box(extents=[2 * v for v in p])
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=p[0], height=2 * p[1], sections=segments)
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=p[0], height=2 * p[1], sections=segments)
        mesh.apply_translation([0, 0, -p[1]])
    elif kind == "torus":
        mesh = trimesh.creation.torus(major_radius=p[0], minor_radius=p[1], major_sections=segments,
                                      minor_sections=max(8, segments // 2))
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3)
        mesh.apply_scale(p)
    else:
        raise ValueError(f"unknown primitive {kind!r} (known: {', '.join(PRIMITIVES)})")
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """An ASCII OFF file of a triangle mesh."""
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in vertices]
    lines += ["3 " + " ".join(str(int(i)) for i in row) for row in faces]
    Path(path).write_text("\n".join(lines) + "\n")


__all__ = ["MESH_SUFFIXES", "PRIMITIVES", "centres", "inside", "is_closed", "normalised", "parse_mesh",
           "primitive_mesh", "primitive_parameters", "procedural_shapes", "random_rotations", "read_mesh",
           "surface_voxels", "voxelize_mesh", "write_off"]
