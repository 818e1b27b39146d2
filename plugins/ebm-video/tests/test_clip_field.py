"""The completion field: ``clip_field`` (an energy of a clip's missing values given the
observed ones) learned by ``clip_completion_dsm``, and ``recover`` using it."""

import json

import pytest
import torch
from ebm_video import ClipCompletionDSM, ClipCompletionDSMConfig, ClipField, missing_mask, temporal_mean
from ebmcore import Batch, BuildContext, EbmError
from ebmcore.kit.masks import completion_condition
from ebmcore.train import run_recipe


def _field(shape=(1, 5, 4, 4), **settings) -> ClipField:
    return BuildContext(event_shape=shape).build("energy", "clip_field", **({"channels": [16, 16]} | settings))


def test_the_field_sees_the_missing_values_and_the_observed_ones_only_through_its_condition():
    e = _field((2, 5, 4, 4)).double()
    x = torch.randn(3, 2, 5, 4, 4, dtype=torch.float64)
    missing = missing_mask(tuple(x.shape), "pixels", 0.5, torch.Generator().manual_seed(0))
    cond = completion_condition(x, missing)
    assert cond.shape == (3, 3, 5, 4, 4)
    other = torch.where(missing, x, torch.randn_like(x))  # the observed entries of x changed
    assert torch.equal(e(x, cond), e(other, cond))
    assert not torch.allclose(e(x, cond), e(torch.where(missing, x + 0.1, x), cond))
    assert not torch.allclose(e(x, cond), e(x, completion_condition(x * 2, missing)))  # the observed do count
    with pytest.raises(EbmError, match="condition"):
        e(x)
    with pytest.raises(EbmError, match=r"\(3, 3, 5, 4, 4\)"):
        e(x, cond[:, :2])
    with pytest.raises(EbmError, match="clips"):
        BuildContext(event_shape=(1, 8, 8)).build("energy", "clip_field")
    for kernel, says in (([2, 3, 3], "odd"), ([3, 4, 3], "odd"), ([3, 3], "kernel: expected")):
        with pytest.raises(EbmError, match=says):
            _field(kernel=kernel)


def _ramps(n: int, g: torch.Generator) -> torch.Tensor:
    """Clips (n, 1, 5, 4, 4) whose pixels change linearly in time (a start and a slope each):
    a missing frame is the mean of its neighbours, the temporal mean is off by the slope."""
    start = torch.rand(n, 1, 1, 4, 4, generator=g) - 0.5
    slope = (torch.rand(n, 1, 1, 4, 4, generator=g) - 0.5) * 0.3
    return start + slope * torch.arange(5.0).view(1, 1, 5, 1, 1)


def test_the_recovery_step_learns_what_the_neighbouring_frames_imply():
    """Linear ramps in time with frames 1 and 3 missing: from the temporal mean, the trained
    field's step recovers most of the way to the truth (an untrained one hardly moves), and
    worse when the observed frames are another clip's."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, held = _ramps(512, g), _ramps(64, g)
    energy = _field()
    objective = ClipCompletionDSM(energy, ClipCompletionDSMConfig(sigma=0.1), held, "cpu")
    missing = missing_mask(tuple(held.shape), "frames", 0.5, g)

    def error(observed: torch.Tensor) -> float:
        x = torch.where(missing, temporal_mean(observed, missing), observed)
        done = objective.complete(x, missing, rng=g)
        assert torch.equal(done[~missing], x[~missing])
        return float((done - held)[missing].pow(2).mean())

    baseline = float((temporal_mean(held, missing) - held)[missing].pow(2).mean())
    assert error(held) == pytest.approx(baseline, rel=0.05)  # untrained: a step of nearly nothing
    opt = torch.optim.Adam(energy.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        batch = Batch(train[torch.randint(0, 512, (32,), generator=g)], None)
        loss = objective.loss(batch, rng=g)[0]["energy"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-50:]) < 0.9 * sum(losses[:50])
    own, swapped = error(held), error(held.roll(1, 0))  # every clip given another's observed frames
    assert own < 0.25 * baseline < baseline < swapped, (own, baseline, swapped)


def test_recovery_refuses_more_steps():
    objective = ClipCompletionDSM(_field(), ClipCompletionDSMConfig(), torch.zeros(2, 1, 5, 4, 4), "cpu")
    x = torch.randn(2, 1, 5, 4, 4)
    with pytest.raises(EbmError, match="one denoising step"):
        objective.complete(x, missing_mask(tuple(x.shape), "frames", 0.5, torch.Generator()),
                           rng=torch.Generator(), n_steps=5)


def _recipe(**task) -> dict:
    return {"run": {"seed": 0, "steps": 2, "eval_samples": 4},
            "data": {"type": "moving_digits", "n": 8, "heldout": 4, "size": 12, "digit": 6, "clip": 5, "batch_size": 4},
            "energy": {"type": "clip_field", "channels": [4]}, "objective": {"type": "clip_completion_dsm"},
            "tasks": {"recover": {"type": "recover", "n": 2, "fill": "mean", "by": "objective"} | task}}


def test_a_two_step_run_recovers_by_the_objective_without_a_sampler(tmp_path):
    out = tmp_path / "run"
    last = run_recipe(_recipe(), out=str(out), progress=False)
    for key in ("loss/dsm", "recover/mse", "recover/mse_temporal_mean", "recover/vs_temporal_mean"):
        assert key in last and torch.isfinite(torch.tensor(last[key])), key
    assert set(json.loads((out / "tasks.json").read_text())) == {"recover"}
    with pytest.raises(EbmError, match=r"\[sampler\]"):
        run_recipe(_recipe(by="sampler"), out=str(tmp_path / "b"), progress=False)
    bad = _recipe()
    bad["energy"] = {"type": "stconvnet", "channels": [4], "kernels": [[3, 3, 3]], "strides": [[1, 2, 2]]}
    with pytest.raises(EbmError, match="clip_field"):
        run_recipe(bad, out=str(tmp_path / "d"), progress=False)
    mle = bad | {"objective": {"type": "mle"}, "sampler": {"type": "langevin", "n_steps": 2},
                 "generator": {"type": "uniform"}}  # no completion model: refused before training
    with pytest.raises(EbmError, match=r"tasks\.recover.*completion model.*MaximumLikelihood"):
        run_recipe(mle, out=str(tmp_path / "e"), progress=False)
    assert not (tmp_path / "e" / "metrics.jsonl").exists()
    mle["tasks"]["recover"]["by"] = "sampler"
    assert "recover/mse" in run_recipe(mle, out=str(tmp_path / "f"), progress=False)
