"""Trajectories: a BVH and a CSV written here read back exactly (forward kinematics by hand),
corrupt files refused naming the file and line, windows and the temporal split, the guesses,
the navigation world's known cost and expert, the rank correlation, which windows overlap in
time, and short runs of the recipes' components (conditional MLE, ranking NCE against
retrieved futures, forecast, plan) on synthetic data."""

import math

import pytest
import torch
from ebm_trajectory import guess, joint_positions, read_bvh, read_csv, spearman
from ebm_trajectory import navigation as nav
from ebm_trajectory.data import MocapData, windows
from ebm_trajectory.retrieval import nearest_neighbours, neighbour_indices
from ebm_trajectory.tasks import ranked_set

from ebmcore import EbmError, PluginHost
from ebmcore.build import BuildContext
from ebmcore.train import run_recipe

# one thread in each test, restored after (a process-wide setting would slow and change every later test)
pytestmark = pytest.mark.usefixtures("one_thread")
#: this plugin and the one whose sampler it builds by name, nothing else (no observers: fast)
HOST = PluginHost(["ebm_trajectory", "ebm_langevin"], autoload=False)


def build(kind, name, /, **settings):
    return BuildContext(registry=HOST.registry).build(kind, name, **settings)

BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Spine
  {
    OFFSET 0 1 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Head
    {
      OFFSET 0 2 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0 1 0
      }
    }
  }
}
MOTION
Frames: {frames}
Frame Time: 0.1
{rows}
"""


def write_bvh(path, frames=3, rows=None):
    if rows is None:
        # the root moves +1 in x per frame; frame 1 turns the root 90° about z; frame 2 the spine 90° about x
        rows = ["0 0 0 0 0 0 0 0 0 0 0 0", "1 0 0 90 0 0 0 0 0 0 0 0", "2 0 0 0 0 0 0 0 90 0 0 0"][:frames]
    path.write_text(BVH.replace("{frames}", str(frames)).replace("{rows}", "\n".join(rows)))
    return path


def test_a_bvh_file_reads_back_with_forward_kinematics(tmp_path):
    m = read_bvh(write_bvh(tmp_path / "walk.bvh"))
    assert [j.name for j in m.joints] == ["Hips", "Spine", "Head"] and m.fps == pytest.approx(10)
    p = joint_positions(m)
    assert p.shape == (3, 3, 3)
    expected = torch.tensor([[[0, 0, 0], [0, 1, 0], [0, 3, 0]],
                             [[1, 0, 0], [0, 0, 0], [-2, 0, 0]],  # Rz(90°) takes +y to −x
                             [[2, 0, 0], [2, 1, 0], [2, 1, 2]]],  # Rx(90°) at the spine takes +y to +z
                            dtype=torch.float64)
    assert torch.allclose(p, expected, atol=1e-9)


@pytest.mark.parametrize(("text", "line", "what"), [
    (lambda t: t.replace("OFFSET 0 1 0", "OFFSET 0 one 0", 1), 8, "expected a number"),
    (lambda t: t.replace("CHANNELS 3 Zrotation", "CHANNELS 3 Wrotation", 1), 9, "unknown channel"),
    (lambda t: t.replace("Frames: 3", "Frames: 4"), 26, "Frames: 4 but 3"),
    (lambda t: t.replace("1 0 0 90 0 0 0 0 0 0 0 0", "1 0 0 90 0 0 0 0 0 0 0"), 25, "11 numbers"),
    (lambda t: t.replace("HIERARCHY", "HIERARCHIE"), 1, "starts with HIERARCHY"),
    (lambda t: t.split("MOTION")[0], 20, "no MOTION"),
    (lambda t: t.replace("2 0 0 0 0 0 0 0 90 0 0 0", "2 0 0 0 0 0 0 0 nan 0 0 0"), 26, "not finite"),
])
def test_a_corrupt_bvh_is_refused_naming_the_file_and_line(tmp_path, text, line, what):
    path = write_bvh(tmp_path / "bad.bvh")
    path.write_text(text(path.read_text()))
    with pytest.raises(EbmError, match=f"bad.bvh:{line}: .*{what}"):
        read_bvh(path)


def test_binary_and_missing_files_are_refused(tmp_path):
    (tmp_path / "bin.bvh").write_bytes(b"HIERARCHY\n\xff\xfe")
    with pytest.raises(EbmError, match="bin.bvh:2: not text"):
        read_bvh(tmp_path / "bin.bvh")
    with pytest.raises(EbmError, match="gone.bvh: no such file"):
        read_bvh(tmp_path / "gone.bvh")


def write_csv(path, frames=60):
    t = torch.arange(frames, dtype=torch.float64)
    # two points in the plane: one walking at 0.1 per frame, one circling it
    rows = torch.stack([0.1 * t, 0 * t, 0.1 * t + (t / 5).cos(), (t / 5).sin()], 1)
    path.write_text("ax,ay,bx,by\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows.tolist()) + "\n")
    return path, rows


def test_csv_windows_the_temporal_split_and_relative_positions(tmp_path):
    path, rows = write_csv(tmp_path / "walk.csv")
    assert torch.allclose(read_csv(path), rows, atol=1e-6)
    d = build("data", "mocap", files=[str(path)], csv_fps=10.0, fps=5.0, point_dims=2, up=None, past=3, future=2,
              stride=1, heldout=0.25)
    assert isinstance(d, MocapData) and d.event_shape == (5, 4)
    # 45 training frames: windows of 5 frames every 2nd frame span 9; 15 held-out frames give 7
    assert len(d.dataset().x) == 45 - 9 + 1 and len(d.heldout().x) == 15 - 9 + 1
    x, observed = d.heldout()
    assert observed.shape == x.shape and observed[:, :3].all() and not observed[:, 3:].any()
    # relative: the first point is at the origin at the last observed frame; the held-out
    # windows are the last frames' (the circling point's phase there)
    assert torch.allclose(x[:, 2, :2], torch.zeros(len(x), 2), atol=1e-6)
    first = (rows[45:54:2] - rows[45 + 4, :2].repeat(2)) / d.scale
    assert torch.allclose(x[0], first.float(), atol=1e-5)
    # the walker moves at a constant velocity: constant velocity forecasts it exactly
    cv = guess(x, observed, "extrapolate")
    assert torch.allclose(cv[..., :2], x[..., :2], atol=1e-5)
    nn = nearest_neighbours(x, observed, d.dataset().x)[0]
    assert torch.equal(nn[:, :3], x[:, :3])


def test_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(EbmError, match="a.csv:2: 2 columns"):
        read_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("1,2\n3,x\n")
    with pytest.raises(EbmError, match="b.csv:2: expected a finite number"):
        read_csv(tmp_path / "b.csv")


def test_the_packaged_clips_name_the_package_when_missing(monkeypatch, tmp_path):
    import ebm_trajectory.data as data

    monkeypatch.setattr(data, "BVH_FOLDER", tmp_path)
    with pytest.raises(EbmError, match="apt-get install assimp-testmodels"):
        build("data", "mocap", name="cmu")


def test_windows_take_every_step_th_frame():
    p = torch.arange(10.0).view(10, 1, 1)
    w = windows(p, step=2, length=3, stride=3)
    assert w[:, :, 0, 0].tolist() == [[0, 2, 4], [3, 5, 7]]


def test_the_guess_is_the_straight_line_between_observed_ends():
    x = torch.randn(2, 5, 3)
    observed = torch.zeros(5, 3, dtype=torch.bool)
    observed[0] = observed[-1] = True
    g = guess(x, observed.expand(2, 5, 3))
    s = torch.linspace(0, 1, 5).view(1, 5, 1)
    assert torch.allclose(g, x[:, :1] + s * (x[:, -1:] - x[:, :1]), atol=1e-6)


def test_the_expert_plans_the_optimum_of_the_known_cost():
    start, goal, obstacles = nav.scenes(32, obstacles=3, seed=0)
    start, goal, obstacles = start.double(), goal.double(), obstacles.double()
    line = nav.straight(start, goal, 12)
    plan = nav.plan(start, goal, obstacles, 12, rng=torch.Generator().manual_seed(0))
    c_line, c_plan = nav.cost(line, obstacles), nav.cost(plan, obstacles)
    assert (c_plan <= c_line + 1e-9).all() and c_plan.mean() < c_line.mean()
    # a stationary point: the gradient at the free points vanishes
    assert nav._cost_grad(plan, obstacles).abs().max() < 1e-3
    # no obstacle: the straight line is optimal, its cost the squared length (W_LEN = 1)
    far = torch.tensor([[[5.0, 5.0, 0.1]]], dtype=torch.float64)
    assert nav.cost(line[:1], far).item() == pytest.approx((goal[0] - start[0]).pow(2).sum().item(), rel=1e-3)
    x = nav.pack(plan, obstacles)
    assert x.shape == (32, 12, 11) and torch.equal(nav.unpack(x)[1], obstacles)


def test_spearman_and_the_ranked_set():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    assert spearman(a, a ** 3).tolist() == pytest.approx([1.0, 1.0])
    assert spearman(a, -a).tolist() == pytest.approx([-1.0, -1.0])
    start, goal, obstacles = nav.scenes(4, obstacles=2, seed=1)
    plan = nav.plan(start.double(), goal.double(), obstacles.double(), 10)
    s = ranked_set(plan, plan, random=2, rng=torch.Generator().manual_seed(0))
    assert s.shape == (4, 2 + 2 * 4 + 1 + 2, 10, 2)
    assert torch.allclose(s[:, :, 0], plan[:, None, 0].expand(4, s.shape[1], 2))  # starts kept
    # the true cost ranks the set as the perturbation scales grow (smooth ones)
    c = nav.cost(s.flatten(0, 1), obstacles.double().repeat_interleave(s.shape[1], 0)).view(4, -1)
    assert (c[:, 0:1] <= c[:, 2::2][:, :4] + 1e-9).all()


def test_navigation_trains_and_plans(tmp_path):
    recipe = {"run": {"steps": 3, "eval_samples": 8, "seed": 0},
              "data": {"type": "navigation", "n": 16, "heldout": 4, "length": 6, "obstacles": 2, "batch_size": 8},
              "energy": {"type": "temporal_convnet", "channels": [8, 8]},
              "sampler": {"type": "langevin", "n_steps": 3, "step_size": 0.01, "noise": 0.005},
              "objective": {"type": "conditional_mle"},
              "tasks": {"plan": {"type": "plan", "n": 4, "kernel": "langevin",
                                 "kernel_options": {"step_size": 0.01, "noise": 0.0, "n_steps": 3}}}}
    out = tmp_path / "run"
    record = run_recipe(recipe, out=str(out), progress=False, host=HOST)
    assert {"plan/spearman", "plan/distance", "plan/distance/straight", "excess_cost", "excess_cost/straight",
            "excess_cost/heldout"} <= set(record)
    assert -1 <= record["plan/spearman"] <= 1
    assert (out / "tasks" / "plan" / "plan.png").exists() and (out / "expert.png").exists()


def test_masked_chains_keep_the_context_bit_for_bit():
    ctx = BuildContext(registry=HOST.registry)
    data = ctx.built["data"] = ctx.build("data", "navigation", n=8, heldout=4, length=6, obstacles=1)
    ctx.event_shape = data.event_shape
    ctx.built["energy"] = ctx.build("energy", "temporal_convnet", channels=[4])
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=5, step_size=0.1)
    objective = ctx.build("objective", "conditional_mle", start_noise=0.3)
    x = objective.sample(6, rng=torch.Generator().manual_seed(0))
    held, observed = data.heldout()
    idx = torch.tensor([0, 1, 1, 2, 2, 3])  # spread over the held-out split, first to last
    assert torch.equal(torch.where(observed[idx], x, 0), torch.where(observed[idx], held[idx], 0))
    assert not torch.equal(x, held[idx])


def mocap_recipe(path, objective, forecast):
    """Two updates on the CSV walk of ``write_csv``, with these objective and forecast settings."""
    return {"run": {"steps": 2, "eval_samples": 4, "seed": 0},
            "data": {"type": "mocap", "files": [str(path)], "csv_fps": 10.0, "fps": 5.0, "point_dims": 2,
                     "up": None, "past": 3, "future": 3, "stride": 2, "batch_size": 8},
            "energy": {"type": "temporal_convnet", "channels": [8], "top": "linear"},
            "sampler": {"type": "langevin", "n_steps": 2, "step_size": 0.01, "noise": 0.005},
            "objective": {"type": "conditional_mle", **objective},
            "tasks": {"forecast": {"type": "forecast", **forecast}}}


def test_mocap_forecast_runs_on_a_csv(tmp_path):
    path, _ = write_csv(tmp_path / "walk.csv", frames=120)
    recipe = mocap_recipe(path, {"start": "extrapolate"}, {"horizons": [0.2, 0.6], "k": 2})
    out = tmp_path / "run"
    record = run_recipe(recipe, out=str(out), progress=False, host=HOST)
    for h in ("0.2s", "0.6s"):
        assert {f"forecast/mde@{h}", f"forecast/best_of_k@{h}", f"forecast/constant_velocity@{h}",
                f"forecast/nearest_neighbour@{h}"} <= set(record)
        assert record[f"forecast/best_of_k@{h}"] <= record[f"forecast/mde@{h}"] + 1e-9
    assert (out / "tasks" / "forecast" / "forecast.png").exists() and "motion" in record
    with pytest.raises(EbmError, match="beyond the 3 future frames"):
        recipe["tasks"]["forecast"]["horizons"] = [1.0]
        run_recipe(recipe, out=str(tmp_path / "run2"), progress=False, host=HOST)
    assert math.isfinite(record["forecast/mde@0.2s"])


def test_the_energies_take_windows_and_refuse_other_shapes():
    ctx = BuildContext(registry=HOST.registry)
    ctx.event_shape = (6, 2 + 3 * 2)
    for name in ("temporal_convnet", "scene_cost"):
        e = ctx.build("energy", name, channels=[4])
        assert e(torch.randn(3, 6, 8)).shape == (3,)
    # the clearance cost sees distances only: the same for the obstacles listed in another order
    e = ctx.build("energy", "scene_cost", channels=[4], hidden=[4])
    x = torch.randn(2, 6, 8)
    swapped = torch.cat([x[..., :2], x[..., 5:8], x[..., 2:5]], 2)
    assert torch.allclose(e(x), e(swapped), atol=1e-5)
    ctx.event_shape = (6, 7)
    with pytest.raises(EbmError, match="scene_cost' needs scenes"):
        ctx.build("energy", "scene_cost")
    ctx.event_shape = (1, 8, 8)
    with pytest.raises(EbmError, match="temporal_convnet' needs trajectories"):
        ctx.build("energy", "temporal_convnet")


def test_a_forecast_of_no_steps_ranks_the_neighbours_futures_unchanged(tmp_path):
    path, _ = write_csv(tmp_path / "walk.csv", frames=120)
    recipe = mocap_recipe(path, {"negatives_from": "data", "start_noise": 0.3},
                          {"horizons": [0.6], "k": 3, "start": "neighbours", "start_noise": 0.0, "n_steps": 0})
    record = run_recipe(recipe, out=str(tmp_path / "run"), progress=False, host=HOST)
    # no chain moved them: the k forecasts are the k neighbours' futures themselves
    assert record["forecast/mean@0.6s"] == pytest.approx(record["forecast/neighbours_mean@0.6s"], abs=1e-9)


@pytest.mark.parametrize("negatives_from", ["guess", "data"])
def test_contrastive_divergence_starts_the_negatives_at_the_data(negatives_from):
    ctx = BuildContext(registry=HOST.registry)
    data = ctx.built["data"] = ctx.build("data", "navigation", n=8, heldout=4, length=6, obstacles=1)
    ctx.event_shape = data.event_shape
    ctx.built["energy"] = ctx.build("energy", "temporal_convnet", channels=[4])
    # one noise-free step of 1e-6: the negatives are where the chains start
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=1, step_size=1e-6, noise=0.0)
    objective = ctx.build("objective", "conditional_mle", start_noise=0.0, negatives_from=negatives_from)
    _, metrics = objective.loss(data.dataset(), rng=torch.Generator().manual_seed(0))
    same = math.isclose(metrics["energy/data"], metrics["energy/sample"], abs_tol=1e-4)
    assert same == (negatives_from == "data")


def write_wander(path, frames=300):
    """Two points wandering on sums of sines of random frequencies: futures that similar pasts do not fix."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(frames, dtype=torch.float64)[:, None]
    f, phase = 0.05 + 0.3 * torch.rand(2, 6, generator=g, dtype=torch.float64)
    a = (f[:3] * t + phase[:3]).sin().sum(1, keepdim=True)
    rows = torch.cat([a, 0.5 * a, (1.7 * f[3:5] * t + phase[3:5]).cos()], 1)
    path.write_text("ax,ay,bx,by\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows.tolist()) + "\n")
    return path


def test_windows_overlap_when_they_share_a_source_frame(tmp_path):
    a, _ = write_csv(tmp_path / "a.csv", frames=60)
    b, _ = write_csv(tmp_path / "b.csv", frames=40)
    d = build("data", "mocap", files=[str(a), str(b)], csv_fps=10.0, fps=5.0, point_dims=2, up=None, past=3,
              future=2, stride=1, heldout=0.25)
    # a window spans 9 source frames (5 frames, every 2nd) and one starts at every frame; clip a
    # has 45 training frames (37 windows), clip b 30 (22 windows)
    j = torch.arange(len(d.dataset().x))
    assert len(j) == 37 + 22
    overlap = d.overlapping(torch.tensor([0, 36, 37, 40]))
    assert torch.equal(overlap[0], j < 9)
    assert torch.equal(overlap[1], (j >= 28) & (j < 37))  # the last of clip a: not the first of clip b
    assert torch.equal(overlap[2], (j >= 37) & (j < 46))
    assert torch.equal(overlap[3], (j >= 37) & (j < 49))
    scenes = build("data", "navigation", n=5, heldout=2, length=4, obstacles=1)
    assert torch.equal(scenes.overlapping(torch.tensor([3])), torch.arange(5)[None] == 3)


def test_retrieval_nce_learns_to_rank_each_future_above_retrieved_ones(tmp_path):
    ctx = BuildContext(registry=HOST.registry)
    data = ctx.built["data"] = ctx.build("data", "mocap", files=[str(write_wander(tmp_path / "w.csv"))],
                                         csv_fps=10.0, fps=5.0, point_dims=2, up=None, past=3, future=3, stride=1)
    ctx.event_shape = data.event_shape
    torch.manual_seed(0)
    ctx.built["energy"] = ctx.build("energy", "temporal_convnet", channels=[16], top="linear")
    objective = ctx.build("objective", "retrieval_nce", k=3)
    x, observed = data.dataset()
    # the retrieved futures never come from a window that shares a frame with the one ranked
    near = neighbour_indices(x, observed, x, 3, exclude=data.overlapping)
    assert not data.overlapping(torch.arange(len(x))).gather(1, near).any()
    optimiser = torch.optim.Adam(objective.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(0)
    top1 = []
    for _ in range(200):
        loss, metrics = objective.loss(data.dataset(), rng=rng)
        optimiser.zero_grad()
        loss["energy"].backward()
        optimiser.step()
        top1.append(float(metrics["rank/top1"]))
    # chance is 1 in 4 (the own future among 3 retrieved): untrained near it, trained far above
    assert top1[0] < 0.4 and top1[-1] > 0.6
    # a completion is the lowest-energy of the futures retrieved for the observed part
    held, observed = data.heldout()
    completed = objective.complete(held, ~observed, rng=rng)
    candidates = nearest_neighbours(held, observed, x, 3)
    with torch.no_grad():
        best = candidates[objective.energy(candidates.flatten(0, 1)).view(3, -1).argmin(0), torch.arange(len(held))]
    assert torch.equal(completed, best)
    with pytest.raises(EbmError, match="not one of them"):
        objective.loss(data.heldout(), rng=rng)


def test_a_recipe_of_retrieval_nce_needs_no_sampler(tmp_path):
    path, _ = write_csv(tmp_path / "walk.csv", frames=120)
    recipe = mocap_recipe(path, {}, {"horizons": [0.6], "k": 3, "start": "neighbours", "start_noise": 0.0,
                                     "n_steps": 0})
    del recipe["sampler"]
    recipe["objective"] = {"type": "retrieval_nce", "k": 3}
    record = run_recipe(recipe, out=str(tmp_path / "run"), progress=False, host=HOST)
    assert {"loss/nce", "rank/top1", "forecast/mde@0.6s"} <= set(record)
    recipe["objective"]["k"] = 500
    with pytest.raises(EbmError, match=r"k = 500 needs more training windows.*\$\.objective\.k"):
        run_recipe(recipe, out=str(tmp_path / "run2"), progress=False, host=HOST)


def test_retrieval_nce_finds_each_window_even_when_pasts_repeat(tmp_path):
    # two points standing still for 30 frames, then walking: windows that start in the pause
    # share one past, and some of them walk in their futures
    t = torch.arange(120, dtype=torch.float64).sub(30).clamp(min=0)
    rows = torch.stack([0.1 * t, 0 * t, 0.1 * t + 1, 0 * t + 1], 1)
    path = tmp_path / "pause.csv"
    path.write_text("ax,ay,bx,by\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows.tolist()) + "\n")
    ctx = BuildContext(registry=HOST.registry)
    data = ctx.built["data"] = ctx.build("data", "mocap", files=[str(path)], csv_fps=10.0, fps=5.0, point_dims=2,
                                         up=None, past=3, future=3, stride=1, relative=False)
    ctx.event_shape = data.event_shape
    ctx.built["energy"] = ctx.build("energy", "temporal_convnet", channels=[4])
    x, observed = data.dataset()
    same_past = (x[:, :3] == x[:1, :3]).flatten(1).all(1)
    assert not (x[same_past] == x[:1]).flatten(1).all(1).all()  # one past, several futures
    _, metrics = ctx.build("objective", "retrieval_nce", k=3).loss(data.dataset(), rng=torch.Generator())
    assert 0 <= float(metrics["rank/top1"]) <= 1
