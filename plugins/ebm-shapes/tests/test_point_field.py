"""The completion field: ``point_field`` (an energy of the missing points given the observed
ones) learned by ``point_completion_dsm``, and ``pointcloud_reconstruct`` using it."""

import json

import pytest
import torch
from ebm_shapes import PointCompletionDSM, PointCompletionDSMConfig, PointField, point_condition
from ebm_shapes.point_tasks import split_plane
from ebmcore import Batch, BuildContext, EbmError
from ebmcore.train import run_recipe


def _field(points: int = 24, **settings) -> PointField:
    settings = {"point_layers": [16, 32], "code": 16, "field_layers": [32, 32]} | settings
    return BuildContext(event_shape=(points, 3)).build("energy", "point_field", **settings)


def test_the_field_sees_the_missing_points_and_the_observed_ones_only_through_its_condition():
    e = _field().double()
    x = torch.randn(3, 24, 3, dtype=torch.float64)
    missing, _ = split_plane(x, 0.5, torch.Generator().manual_seed(0))
    cond = point_condition(x, missing)
    assert cond.shape == (3, 24, 4) and torch.equal(cond[..., 3].bool(), missing)
    assert torch.equal(cond[..., :3][missing], torch.zeros(int(missing.sum()), 3, dtype=torch.float64))
    other = torch.where(missing[..., None], x, torch.randn_like(x))  # observed entries of x changed
    assert torch.equal(e(x, cond), e(other, cond))
    moved = torch.where(missing[..., None], x + 0.1, x)
    assert not torch.allclose(e(x, cond), e(moved, cond))
    assert not torch.allclose(e(x, cond), e(x, point_condition(x * 2, missing)))  # the observed points do count
    order = torch.randperm(24)
    assert torch.allclose(e(x[:, order], cond[:, order]), e(x, cond), atol=1e-10)
    with pytest.raises(EbmError, match="condition"):
        e(x)
    with pytest.raises(EbmError, match=r"\(3, 24, 4\)"):
        e(x, cond[..., :3])
    with pytest.raises(EbmError, match="observed point"):
        e(x, point_condition(x, torch.ones(3, 24, dtype=torch.bool)))
    with pytest.raises(EbmError, match="point clouds"):
        BuildContext(event_shape=(1, 8, 8)).build("energy", "point_field")


def _spheres(n: int, points: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds on centred spheres, radius 0.5 and 1.0 in turn: (clouds, radii)."""
    r = torch.tensor([0.5, 1.0]).repeat(n // 2)
    u = torch.randn(n, points, 3, generator=g)
    return r[:, None, None] * u / u.norm(dim=-1, keepdim=True), r


def test_the_completion_step_learns_the_surface_the_observed_half_implies():
    """Spheres of radius 0.5 or 1: only the observed half says which. Missing points started
    halfway (radius 0.75) are pulled toward their own sphere by the trained field's denoising
    step (an untrained one hardly moves them), and toward the other when the observed half is
    the other sphere's."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, _ = _spheres(256, 48, g)
    energy = _field(48)
    objective = PointCompletionDSM(energy, PointCompletionDSMConfig(sigma=0.15), train, train, "cpu")
    held, r = _spheres(32, 48, g)
    missing, _ = split_plane(held, 0.5, g)
    m = missing[..., None].expand_as(held)
    start = torch.where(m, 0.75 * held / held.norm(dim=-1, keepdim=True), held)

    def error(observed: torch.Tensor) -> float:
        x = torch.where(m, start, observed)
        done = objective.complete(x, m, rng=g)
        assert torch.equal(done[~m], x[~m])
        return float((done.norm(dim=-1) - r[:, None])[missing].abs().mean())

    assert error(held) == pytest.approx(0.25, rel=0.02)  # untrained: a step of nearly nothing
    opt = torch.optim.Adam(energy.parameters(), lr=5e-3)
    losses = []
    for _ in range(300):
        batch = Batch(train[torch.randint(0, 256, (32,), generator=g)], None)
        loss = objective.loss(batch, rng=g)[0]["energy"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-50:]) < 0.9 * sum(losses[:50])
    own, swapped = error(held), error(held.roll(1, 0))  # rolled by one: every cloud sees the other radius
    assert own < 0.75 * 0.25 < 0.25 < swapped, (own, swapped)


def test_completion_refuses_half_missing_points_and_more_steps():
    objective = PointCompletionDSM(_field(), PointCompletionDSMConfig(), torch.zeros(4, 24, 3), torch.zeros(4, 24, 3),
                                   "cpu")
    x = torch.randn(2, 24, 3)
    m = torch.zeros_like(x, dtype=torch.bool)
    m[:, :12, 0] = True
    with pytest.raises(EbmError, match="whole points"):
        objective.complete(x, m, rng=torch.Generator())
    with pytest.raises(EbmError, match="one denoising step"):
        objective.complete(x, m[..., :1].expand_as(x), rng=torch.Generator(), n_steps=5)


def _recipe(**task) -> dict:
    return {"run": {"seed": 0, "steps": 2, "eval_samples": 5},
            "data": {"type": "pointclouds", "points": 24, "n": 20, "heldout": 6, "batch_size": 4},
            "energy": {"type": "point_field", "point_layers": [8, 16], "code": 8, "field_layers": [16]},
            "generator": {"type": "gaussian", "std": 0.5}, "objective": {"type": "point_completion_dsm"},
            "tasks": {"reconstruct": {"type": "pointcloud_reconstruct", "n": 4, "frames": 0, "fill": "nearest",
                                      "by": "objective"} | task}}


def test_a_two_step_run_completes_by_the_objective_without_a_sampler(tmp_path):
    out = tmp_path / "run"
    last = run_recipe(_recipe(), out=str(out), progress=False)
    for key in ("loss/dsm", "reconstruct/chamfer", "reconstruct/chamfer_nearest_training", "mmd_cd"):
        assert key in last and torch.isfinite(torch.tensor(last[key])), key
    assert set(json.loads((out / "tasks.json").read_text())) == {"reconstruct"}
    with pytest.raises(EbmError, match=r"\[sampler\]"):
        run_recipe(_recipe(by="sampler"), out=str(tmp_path / "b"), progress=False)
    with pytest.raises(EbmError, match=r"\[sampler\]"):
        run_recipe(_recipe(frames=2), out=str(tmp_path / "c"), progress=False)
    bad = _recipe()
    bad["energy"] = {"type": "pointnet", "point_layers": [8], "head_layers": [8]}
    with pytest.raises(EbmError, match="point_field"):
        run_recipe(bad, out=str(tmp_path / "d"), progress=False)
