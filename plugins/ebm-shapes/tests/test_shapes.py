"""Voxel shapes: procedural solids (seeded, labelled, inside the grid), the voxeliser against
the analytic solids through .off files written here, corrupt and non-mesh files refused
naming them, the CGAL set's absence naming its package, the energy, the task baselines, and
a two-step run of a recipe with all three tasks."""

import json
import os
import tarfile

import numpy as np
import pytest
import torch
from ebm_shapes import (
    VoxelNet,
    closing,
    iou,
    nearest_training,
    procedural_shapes,
    read_mesh,
    signed,
    voxelize_mesh,
)
from ebm_shapes import data as shapes_data
from ebm_shapes.meshes import (
    PRIMITIVES,
    centres,
    inside,
    normalised,
    primitive_mesh,
    primitive_parameters,
    write_off,
)
from ebm_shapes.pictures import depth_views, views_png

from ebmcore import BuildContext, EbmError
from ebmcore.build import build
from ebmcore.train import run_recipe

# one thread in each test, restored after (a process-wide setting would slow and change every later test)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_procedural_shapes_are_seeded_labelled_and_inside_the_grid():
    x, y = procedural_shapes(20, 16, seed=3)
    again, _ = procedural_shapes(20, 16, seed=3)
    other, _ = procedural_shapes(20, 16, seed=4)
    assert x.shape == (20, 16, 16, 16) and x.dtype == torch.bool
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert y.tolist() == [i % 5 for i in range(20)]
    filled = x.flatten(1).float().mean(1)
    assert (filled > 0.01).all() and (filled < 0.6).all()
    border = x.clone()
    border[:, 1:-1, 1:-1, 1:-1] = False
    assert not border.any()  # nothing touches the faces of the grid


@pytest.mark.parametrize("kind", PRIMITIVES)
def test_a_written_off_file_voxelises_like_the_solid(kind, tmp_path):
    params = primitive_parameters(kind, torch.Generator().manual_seed(1))
    v, f = primitive_mesh(kind, params, segments=48)
    path = tmp_path / f"{kind}.off"
    write_off(path, v, f)
    rv, rf = read_mesh(path)
    assert np.allclose(rv, v, atol=1e-5) and np.array_equal(rf, f)
    vox = voxelize_mesh(rv, rf, 24)
    exact = inside(kind, centres(24).view(-1, 3), params).view(24, 24, 24)
    assert float((vox & exact).sum() / (vox | exact).sum()) > 0.95


def test_corrupt_and_non_mesh_files_are_refused_naming_them(tmp_path):
    cases = {"garbage.off": b"OFF\n8 12 0\n1 2 3\nnot numbers\n", "short.off": b"OFF\n3 1 0\n0 0 0\n",
             "text.off": b"hello world\n", "noise.stl": bytes(range(256)) * 3, "empty.obj": b"# nothing\n",
             "shape.txt": b"OFF\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(EbmError, match=name):
            read_mesh(tmp_path / name)
    with pytest.raises(EbmError, match="missing.off"):
        read_mesh(tmp_path / "missing.off")


def test_meshes_from_a_folder_and_an_archive(tmp_path, mesh_folder):
    folder = mesh_folder()
    d = build("data", "meshes", path=str(folder), res=16, heldout=0.2)
    assert d.event_shape == (1, 16, 16, 16) and len(d.dataset().x) == 8 and len(d.heldout().x) == 2
    assert d.num_classes is None and set(d.dataset().x.unique().tolist()) == {-1.0, 1.0}
    archive = tmp_path / "meshes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="data/meshes")
    a = build("data", "meshes", path=str(archive), res=16, heldout=0.2, rotations=2)
    assert len(a.dataset().x) == 16 and torch.equal(a.dataset().x[::2], d.dataset().x)
    (folder / "broken.off").write_bytes(b"OFF\n4 2 0\n0 0 0\n")
    with pytest.raises(EbmError, match="broken.off"):
        build("data", "meshes", path=str(folder), res=16)


def test_the_cgal_set_names_its_package_when_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes_data, "CGAL_ARCHIVE", tmp_path / "data.tar.gz")
    with pytest.raises(EbmError, match="libcgal-demo"):
        build("data", "meshes", name="cgal")


def test_the_energy_is_per_class_with_a_marginal_and_features():
    ctx = BuildContext(event_shape=(1, 16, 16, 16), num_classes=5)
    e = ctx.build("energy", "voxelnet", channels=[4, 8], kernels=[4, 4], strides=[2, 2], condition="label",
                  reference_std=1.0)
    assert isinstance(e, VoxelNet)
    x = torch.rand(3, 1, 16, 16, 16) * 2 - 1
    per_class = e.head(e.features(x)) + x.flatten(1).pow(2).sum(1, keepdim=True) / 2
    assert torch.allclose(e(x, torch.tensor([0, 4, 2])), per_class[[0, 1, 2], [0, 4, 2]], atol=1e-5)
    assert torch.allclose(e(x), -torch.logsumexp(-per_class, 1), atol=1e-4)
    assert e.features(x).shape == (3, 8 * 4 * 4 * 4)
    with pytest.raises(Exception, match="num_classes"):
        BuildContext(event_shape=(1, 16, 16, 16)).build("energy", "voxelnet", condition="label")


def test_baselines_closing_and_the_nearest_training_shape():
    x = signed(procedural_shapes(10, 16, seed=0)[0])
    missing = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    closed, nearest = closing(x, missing), nearest_training(x, missing, x)
    assert torch.equal(nearest, x)  # the shape itself is in the training set
    assert torch.equal(closed[~missing], x[~missing])
    empty = torch.where(missing, -torch.ones_like(x), x)
    assert iou(closed, x).mean() > iou(empty, x).mean()


def test_depth_views_and_pictures(tmp_path):
    x = -torch.ones(1, 1, 8, 8, 8)
    x[0, 0, 2:4, 3:6, 5:7] = 1  # a block: x 2..3, y 3..5, z 5..6
    v = depth_views(x)
    assert v.shape == (1, 3, 8, 8)
    assert (v[0, 2] > 0).sum() == 2 * 3 and (v[0, 0] > 0).sum() == 3 * 2 and (v[0, 1] > 0).sum() == 2 * 2
    views_png(x.repeat(3, 1, 1, 1, 1), tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_a_two_step_run_with_every_task(tmp_path):
    recipe = {"run": {"seed": 0, "steps": 2, "eval_samples": 10},
              "data": {"type": "shapes", "res": 8, "n": 40, "heldout": 10, "conditional": True, "batch_size": 8},
              "energy": {"type": "voxelnet", "channels": [4, 8], "kernels": [3, 3], "strides": [2, 2],
                         "condition": "label"},
              "sampler": {"type": "langevin", "n_steps": 3, "step_size": 1.0, "noise": 0.01, "clamp": [-1.0, 1.0]},
              "generator": {"type": "uniform"}, "objective": {"type": "mle"},
              "tasks": {"recover": {"type": "voxel_recover", "n": 4},
                        "superres": {"type": "voxel_superres", "n": 4, "kernel": "langevin",
                                     "kernel_options": {"step_size": 0.1, "noise": 0.0, "n_steps": 2}},
                        "probe": {"type": "voxel_probe", "per_class": 2, "iterations": 5}}}
    out = tmp_path / "run"
    last = run_recipe(recipe, out=str(out), progress=False)
    for key in ("recover/iou", "recover/iou_closing", "recover/iou_nearest_training", "superres/iou",
                "superres/iou_trilinear", "superres/iou_constraint_only", "probe/accuracy", "probe/assigned", "probe/assigned/noise",
                "nearest_iou", "nearest_iou/heldout", "coverage/noise"):
        assert key in last and np.isfinite(last[key]), key
    tasks = json.loads((out / "tasks.json").read_text())
    assert set(tasks) == {"recover", "superres", "probe"}
    for picture in ("samples.png", "samples_views.png", "tasks/recover/recover.png", "tasks/superres/superres.png",
                    "tasks/probe/classes.png"):
        assert (out / picture).exists(), picture


def test_normalised_fits_the_cube():
    v = normalised(np.array([[0.0, 0, 0], [4, 1, 2]]))
    assert np.allclose(v.max(0), [0.9, 0.225, 0.45]) and np.allclose(v.min(0), -v.max(0))


def test_a_fifo_given_as_a_mesh_archive_is_refused_naming_it(tmp_path, within_seconds):
    fifo = tmp_path / "meshes.tar"
    os.mkfifo(fifo)
    with pytest.raises(EbmError, match="meshes.tar"):
        build("data", "meshes", path=str(fifo), res=8)
