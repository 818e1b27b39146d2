"""``ebmcore.load``: a trained run as one object — the checkpoint's energy, seeded samples
(the same as ``ebm sample``'s), and log p(x) from the run's own estimate of log Z."""

import copy

import pytest
import safetensors.torch
import torch
from support import TINY, ebm

import ebmcore
from ebmcore.train import run_recipe


@pytest.fixture(scope="module")
def density_run(tmp_path_factory):
    """The tiny toy recipe with a held-out log-likelihood task: log Z by AIS, reverse AIS
    and quadrature over [−4, 4]²."""
    recipe = copy.deepcopy(TINY)
    recipe["tasks"] = {"loglik": {"type": "loglik", "chains": 64, "betas": 50, "settle_steps": 5,
                                  "quadrature": [-4.0, 4.0], "grid": 400, "examples": 100}}
    out = tmp_path_factory.mktemp("model") / "run"
    run_recipe(recipe, out=str(out), progress=False)
    return out


def test_the_model_is_the_checkpoint(density_run):
    model = ebmcore.load(density_run)
    assert model.step == TINY["run"]["steps"] and model.recipe.run.seed == 0
    saved = safetensors.torch.load_file(density_run / "checkpoints" / f"step-{model.step:06d}.safetensors")
    state = model.objective.state_dict()
    assert state.keys() == {k[len("model/"):] for k in saved if k.startswith("model/")}
    assert all(torch.equal(state[k], saved["model/" + k]) for k in state)
    # the same network built afresh (other initial weights) with the checkpoint's weights
    fresh = ebmcore.BuildContext(event_shape=(2,)).build("energy", "mlp", hidden=[32, 32])
    fresh.load_state_dict({k[len("model/energy."):]: v for k, v in saved.items() if k.startswith("model/energy.")})
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.energy(x), fresh(x))


def test_samples_are_seeded_as_ebm_sample_draws_them(density_run, tmp_path):
    model = ebmcore.load(density_run)
    a, b, other = model.sample(50, seed=3), model.sample(50, seed=3), model.sample(50, seed=4)
    assert a.shape == (50, 2) and torch.equal(a, b) and not torch.equal(a, other)
    r = ebm("sample", density_run, "-n", "50", "--seed", "3", "--out", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    assert torch.equal(safetensors.torch.load_file(tmp_path / "s.safetensors")["x"], a)
    with pytest.raises(ebmcore.EbmError, match="n must be at least 1"):
        model.sample(0)


def test_log_prob_is_normalised_by_the_runs_estimate_of_log_z(density_run):
    model = ebmcore.load(density_run)
    assert model.log_z.keys() == {"loglik/log_z/ais", "loglik/log_z/raise", "loglik/log_z/quadrature"}
    # exp(log p) on a finer grid than the task's sums to one with the quadrature's log Z
    side = torch.linspace(-4, 4, 601)
    grid = torch.cartesian_prod(side, side)
    cell = (side[1] - side[0]).item() ** 2
    mass = model.log_prob(grid, log_z="loglik/log_z/quadrature").exp().sum().item() * cell
    assert abs(mass - 1) < 0.01, mass
    # default: the largest estimate (the conservative log-likelihood); a number is taken as is
    chosen = max(model.log_z.values())
    assert torch.allclose(model.log_prob(grid[:5]), -model.energy(grid[:5]).double() - chosen)
    assert torch.allclose(model.log_prob(grid[:5], log_z=0.0), -model.energy(grid[:5]).double())
    with pytest.raises(ebmcore.EbmError, match="log_z 'exact': not an estimate of this run"):
        model.log_prob(grid[:5], log_z="exact")


def test_log_prob_without_an_estimate_says_how_to_get_one(tmp_path):
    out = tmp_path / "run"
    run_recipe(copy.deepcopy(TINY), out=str(out), progress=False)
    model = ebmcore.load(out)
    assert model.log_z == {}
    with pytest.raises(ebmcore.EbmError, match=r"no estimate of log Z at step 30.*\[tasks.loglik\].*ebm eval"):
        model.log_prob(torch.zeros(3, 2))
    assert torch.allclose(model.log_prob(torch.zeros(3, 2), log_z=1.5), -model.energy(torch.zeros(3, 2)).double() - 1.5)


def test_load_takes_overrides_and_a_device_and_refuses_what_is_not_a_run(density_run, tmp_path):
    model = ebmcore.load(density_run, overrides=["sampler.n_steps=3"], device="cpu")
    assert model.recipe.sections["sampler"].config.n_steps == 3 and model.device == torch.device("cpu")
    assert model.to("cpu") is model and "step=30" in repr(model)
    with pytest.raises(ebmcore.EbmError, match="not a run directory"):
        ebmcore.load(tmp_path)
