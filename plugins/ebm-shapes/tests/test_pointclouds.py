"""Point clouds: procedural clouds (seeded, labelled, in the unit ball, on the surfaces),
clouds from mesh files, the PointNet energy's permutation invariance, the Chamfer distance
and its coverage/MMD with yardsticks, the completion baselines, and a two-step run of a
recipe with the reconstruction task."""

import json

import numpy as np
import pytest
import torch
from ebm_shapes import (
    PointNetEnergy,
    chamfer,
    chamfer_matrix,
    mmd_coverage,
    procedural_clouds,
)
from ebm_shapes.chamfer import ChamferMetrics, ball_noise, point_gaussian
from ebm_shapes.meshes import primitive_mesh, write_off
from ebm_shapes.point_tasks import nearest_fill, observed_only, split_plane
from ebm_shapes.points import surface_points, unit_ball, views_png

from ebmcore import BuildContext, EbmError
from ebmcore.build import build
from ebmcore.train import run_recipe

# one thread in each test, restored after (a process-wide setting would slow and change every later test)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_procedural_clouds_are_seeded_labelled_and_in_the_unit_ball():
    x, labels = procedural_clouds(10, 64, seed=0)
    assert x.shape == (10, 64, 3) and labels.tolist() == [0, 1, 2, 3, 4] * 2
    assert torch.allclose(x.norm(dim=-1).amax(1), torch.ones(10)) and x.mean(1).abs().max() < 1e-5
    assert torch.equal(x, procedural_clouds(10, 64, seed=0)[0])
    assert not torch.allclose(x, procedural_clouds(10, 64, seed=1)[0])
    turned = procedural_clouds(10, 64, seed=0, rotate=True)[0]
    assert torch.allclose(turned.norm(dim=-1).amax(1), torch.ones(10))


def test_surface_points_lie_on_the_surface():
    g = torch.Generator().manual_seed(0)
    v, f = primitive_mesh("box", torch.tensor([0.5, 0.5, 0.5]))
    p = surface_points(v, f, 500, g)
    assert torch.allclose(p.abs().amax(1), torch.full((500,), 0.5), atol=1e-5)  # on a face
    assert (p.abs() <= 0.5 + 1e-5).all()
    counts = torch.stack([(p[:, k].abs() > 0.5 - 1e-5).sum() for k in range(3)])
    assert counts.min() > 100  # every pair of faces is hit (equal areas: about a third each)
    assert torch.allclose(unit_ball(p).norm(dim=1).amax(), torch.tensor(1.0))


def test_data_from_the_registry_and_from_mesh_files(tmp_path):
    d = build("data", "pointclouds", points=32, n=10, heldout=5, batch_size=4)
    assert d.event_shape == (32, 3) and d.num_classes == 5 and d.dataset().cond is None
    assert len(d.heldout().x) == 5 and d.heldout().cond.tolist() == [0, 1, 2, 3, 4]
    scores = d.evaluate(d.heldout().x)
    assert scores["mmd_cd"] < 1e-6 and scores["coverage_cd"] == 1
    for key in ("mmd_cd/heldout", "mmd_cd/noise", "mmd_cd/gaussian", "coverage_cd/gaussian"):
        assert np.isfinite(scores[key]), key
    for i, kind in enumerate(("box", "cone", "torus")):
        write_off(tmp_path / f"{i}.off", *primitive_mesh(kind, torch.tensor([0.5, 0.3]) if kind != "box"
                                                         else torch.tensor([0.5, 0.3, 0.2])))
    m = build("data", "pointclouds", path=str(tmp_path), points=16, n=4, heldout=2, heldout_share=0.34)
    assert m.event_shape == (16, 3) and len(m.dataset().x) == 4 and len(m.heldout().x) == 2
    (tmp_path / "broken.off").write_bytes(b"OFF\n4 2 0\n0 0 0\n")
    with pytest.raises(EbmError, match="broken.off"):
        build("data", "pointclouds", path=str(tmp_path))


@pytest.mark.parametrize("pooling", ["max", "mean", "both"])
def test_the_energy_is_permutation_invariant(pooling):
    ctx = BuildContext(event_shape=(50, 3))
    e = ctx.build("energy", "pointnet", point_layers=[16, 32], head_layers=[16], pooling=pooling,
                  reference_std=1.0).double()
    assert isinstance(e, PointNetEnergy)
    x = torch.randn(4, 50, 3, dtype=torch.float64)
    shuffled = x[:, torch.randperm(50)]
    assert torch.equal(e(x), e(shuffled))  # bit for bit (the points are put in a canonical order first)
    ties = x.clone()
    ties[:, :10, 0] = 0.5  # ten points share their first coordinate (a face of a box)
    assert torch.equal(e(ties), e(ties[:, torch.randperm(50)]))
    assert not torch.allclose(e(x), e(x.flip(0)))  # but it does see the clouds
    with pytest.raises(EbmError, match="point clouds"):
        BuildContext(event_shape=(1, 8, 8)).build("energy", "pointnet")


def test_chamfer_coverage_and_mmd():
    g = torch.Generator().manual_seed(0)
    a, b = ball_noise(6, 40, g), ball_noise(5, 30, g)
    m = chamfer_matrix(a, b)
    brute = torch.tensor([[float(chamfer(a[i:i + 1], b[j:j + 1])) for j in range(5)] for i in range(6)])
    assert torch.allclose(m, brute, atol=1e-6) and float(chamfer(a, a).abs().max()) < 1e-6
    assert torch.allclose(chamfer_matrix(b, a), m.T, atol=1e-6)
    mmd, cov = mmd_coverage(b, b)
    assert mmd < 1e-6 and cov == 1.0
    mmd, cov = mmd_coverage(b[:1], b)
    assert cov == 1 / 5 and mmd > 0
    clouds, _ = procedural_clouds(20, 64, seed=0)
    gauss = point_gaussian(clouds, 7, g)
    assert gauss.shape == (7, 64, 3)
    sticks = ChamferMetrics(clouds, procedural_clouds(10, 64, seed=1)[0]).yardsticks(10)
    assert sticks["mmd_cd"]["heldout"] < sticks["mmd_cd"]["gaussian"]


def test_completion_baselines():
    x, _ = procedural_clouds(5, 40, seed=0)
    missing, u = split_plane(x, 0.5, torch.Generator().manual_seed(0))
    assert missing.sum(1).tolist() == [20] * 5
    lowest = torch.stack([(x[i] @ u[i])[missing[i]].max() <= (x[i] @ u[i])[~missing[i]].min() for i in range(5)])
    assert lowest.all()
    nearest = nearest_fill(x, missing, u, x)  # the cloud itself is in the training set: the same points
    assert torch.equal(nearest[~missing], x[~missing]) and float(chamfer(nearest, x).abs().max()) < 1e-6
    seen = observed_only(x, missing, torch.Generator().manual_seed(0))
    assert torch.equal(seen[~missing], x[~missing]) and float(chamfer(seen, x).min()) > 0


def test_a_two_step_run_with_the_reconstruction_task(tmp_path):
    recipe = {"run": {"seed": 0, "steps": 2, "eval_samples": 6},
              "data": {"type": "pointclouds", "points": 32, "n": 20, "heldout": 6, "batch_size": 4},
              "energy": {"type": "pointnet", "point_layers": [8, 16], "head_layers": [8]},
              "sampler": {"type": "langevin", "n_steps": 3, "step_size": 1.0, "noise": 0.01},
              "generator": {"type": "gaussian", "std": 0.5}, "objective": {"type": "mle"},
              "tasks": {"reconstruct": {"type": "pointcloud_reconstruct", "n": 3, "frames": 3}}}
    out = tmp_path / "run"
    last = run_recipe(recipe, out=str(out), progress=False)
    for key in ("reconstruct/chamfer", "reconstruct/chamfer_nearest_training", "reconstruct/chamfer_observed_only",
                "mmd_cd", "mmd_cd/heldout", "coverage_cd/noise"):
        assert key in last and np.isfinite(last[key]), key
    assert set(json.loads((out / "tasks.json").read_text())) == {"reconstruct"}
    for picture in ("samples.png", "tasks/reconstruct/reconstruct.png", "tasks/reconstruct/interpolate.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG", picture
    views_png([torch.zeros(2, 5, 3)], tmp_path / "v.png")
