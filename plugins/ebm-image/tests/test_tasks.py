"""Image tasks (inpaint, denoise, ood) on analytic energies whose answers are known."""

import copy
import json
import math
from typing import NamedTuple

import attrs
import pytest
import torch
from ebm_image.common import ImageData
from ebm_image.digits import DigitsData

import ebmcore
from ebmcore import Batch, BuildContext, EbmError, Energy, RecipeError, Sampler, default_host, energy_and_grad
from ebmcore.kit.conformance import GaussianEnergy
from ebmcore.train.recipe import parse_recipe

SIDE = 8
SHAPE = (1, SIDE, SIDE)


class ImageGaussian(Energy):
    """A Gaussian over images: GaussianEnergy on the flattened pixels."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        self.g = GaussianEnergy(mean.flatten(), cov)

    def forward(self, x, cond=None):
        return self.g(x.flatten(1))

    def sample(self, n, *, rng):
        return self.g.sample(n, rng=rng).reshape(n, *SHAPE)


class _State(NamedTuple):
    x: torch.Tensor


class _Info(NamedTuple):
    energy: torch.Tensor


@attrs.frozen
class ULAConfig:
    step_size: float = 0.02
    n_steps: int = 400
    temperature: float = 1.0
    compile: bool = False


class ULA(Sampler):
    """A plain ULA kernel at temperature T (the test owns its sampler: no plugin import)."""

    Config = ULAConfig

    def init(self, x, energy, *, rng, cond=None):
        return _State(x)

    def step(self, state, energy, *, rng, cond=None, mask=None):
        c = self.config
        e, g = energy_and_grad(energy, state.x, cond)
        noise = torch.randn(state.x.shape, generator=rng)
        x = state.x - c.step_size * g + math.sqrt(2 * c.step_size * c.temperature) * noise
        return _State(x if mask is None else torch.where(mask, state.x, x)), _Info(e)


def _smooth_gaussian(length=2.5, scale=0.4):
    """Pixels correlated with a squared-exponential kernel: a hole is well predicted by its border."""
    ij = torch.stack(torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij"), -1).reshape(-1, 2).float()
    d2 = (ij[:, None] - ij[None]).pow(2).sum(-1)
    cov = scale**2 * torch.exp(-d2 / (2 * length**2)) + 1e-3 * torch.eye(SIDE * SIDE)
    mean = torch.linspace(-0.5, 0.5, SIDE)[:, None].expand(SIDE, SIDE).clone()  # a vertical ramp
    return ImageGaussian(mean, cov), mean, cov


def _data(energy, n_train=2000, n_test=300, seed=0):
    rng = torch.Generator().manual_seed(seed)
    train, test = energy.sample(n_train, rng=rng), energy.sample(n_test, rng=rng)
    return ImageData(train, heldout=Batch(test, None), name="gaussian-images")


def _build(name, energy, data, sampler=None, **config):
    ctx = BuildContext(event_shape=SHAPE, built={"data": data, "energy": energy,
                                                 **({"sampler": sampler} if sampler else {})})
    return ctx.build("task", name, **config)


# --- inpaint --------------------------------------------------------------------------------------

def test_inpainting_a_gaussian_finds_the_conditional_mean_and_beats_the_mean_fill(tmp_path):
    energy, mean, cov = _smooth_gaussian()
    data = _data(energy)
    # at a low temperature the chains settle at the conditional mode = the conditional mean
    task = _build("inpaint", energy, data, ULA(step_size=0.001, n_steps=1000, temperature=0.01), n=100, hole=4)
    rng = torch.Generator().manual_seed(1)
    metrics = task.run(None, data, rng=rng, out=tmp_path)

    x = data.heldout().x[:100]
    from ebmcore.kit.masks import hole_mask

    missing = hole_mask(tuple(x.shape), 4, "centre", rng)[0, 0].flatten()
    o, h = ~missing, missing
    mu = mean.flatten()
    cond_mean = mu[h] + (cov[h][:, o] @ torch.linalg.solve(cov[o][:, o], (x.flatten(1)[:, o] - mu[o]).T)).T
    cond_var = torch.diagonal(cov[h][:, h] - cov[h][:, o] @ torch.linalg.solve(cov[o][:, o], cov[o][:, h]))
    # the best any method can do on average is the conditional variance; the mean fill pays the marginal one
    assert metrics["mse"] == pytest.approx(cond_var.mean().item(), rel=0.3)
    assert metrics["mse"] < 0.5 * metrics["mse_mean_fill"]
    assert metrics["mse_mean_fill"] == pytest.approx(torch.diagonal(cov)[h].mean().item(), rel=0.3)
    assert metrics["mse_noise_fill"] > metrics["mse_mean_fill"]
    assert metrics["win_rate_vs_mean_fill"] > 0.7
    assert (tmp_path / "inpaint.png").exists()

    start, completed = task.complete(x, hole_mask(tuple(x.shape), 4, "centre", rng), rng=torch.Generator().manual_seed(2))
    assert (completed.flatten(1)[:, h] - cond_mean).abs().mean() < 0.05


@pytest.mark.parametrize("region", ["centre", "random", "bottom"])
def test_observed_pixels_are_kept_bit_exact_and_only_the_hole_moves(region):
    energy, _, _ = _smooth_gaussian()
    data = _data(energy, n_test=20)
    task = _build("inpaint", energy, data, ULA(step_size=0.05, n_steps=20), hole=3, region=region)
    x = data.heldout().x.clone()
    x[:4, 0, 0, 0] = -0.0
    from ebmcore.kit.masks import hole_mask

    missing = hole_mask(tuple(x.shape), 3, region, torch.Generator().manual_seed(0))
    assert int(missing[0].sum()) == (3 * SIDE if region == "bottom" else 9)
    start, completed = task.complete(x, missing, rng=torch.Generator().manual_seed(0))
    assert torch.equal(completed[~missing], x[~missing])
    assert torch.equal(completed[~missing].signbit(), x[~missing].signbit())
    assert (completed[missing] != start[missing]).all()  # the hole did move
    assert (start[missing].abs() <= 1).all()


def test_a_hole_that_fills_the_image_or_data_without_a_heldout_split_is_an_error(tmp_path):
    energy, _, _ = _smooth_gaussian()
    with pytest.raises(EbmError, match="leaves nothing observed"):
        _build("inpaint", energy, _data(energy), ULA(), hole=SIDE)
    task = _build("inpaint", energy, _data(energy), ULA(n_steps=2), hole=2)
    no_heldout = ImageData(torch.zeros(10, *SHAPE))
    with pytest.raises(EbmError, match="needs data with a held-out split"):
        task.run(None, no_heldout, rng=torch.Generator(), out=tmp_path)


# --- denoise ---------------------------------------------------------------------------------------

def test_denoising_with_the_true_energy_lowers_the_error(tmp_path):
    energy, _, _ = _smooth_gaussian()
    data = _data(energy)
    task = _build("denoise", energy, data, ULA(step_size=0.001, temperature=0.01), n=200, sigma=0.3, n_steps=30)
    m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["mse_noisy"] == pytest.approx(0.09, rel=0.1)
    assert m["mse"] < 0.5 * m["mse_noisy"], m
    assert (tmp_path / "denoise.png").exists()


# --- ood -------------------------------------------------------------------------------------------

class Quadratic(Energy):
    def __init__(self, centre, sign=1.0):
        super().__init__()
        self.register_buffer("centre", centre)
        self.sign = sign

    def forward(self, x, cond=None):
        return self.sign * 0.5 * (x - self.centre).flatten(1).pow(2).sum(1)


def test_ood_with_a_quadratic_energy_centred_on_the_data_ranks_noise_as_ood(tmp_path):
    energy, mean, _ = _smooth_gaussian(scale=0.1)
    data = _data(energy)
    task = _build("ood", Quadratic(mean[None]), data, n=300)
    assert task.sets == ("digits", "noise", "flip", "gaussian")
    m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["auroc/noise"] > 0.99 and m["auroc/gaussian"] > 0.99 and m["auroc/flip"] > 0.99
    assert 0 <= m["auroc/digits"] <= 1
    assert m["energy/noise"] > m["energy/heldout"]
    assert (tmp_path / "ood.png").exists()
    # an energy that prefers noise gets the opposite answer; the training set is no different from held-out
    flipped = _build("ood", Quadratic(mean[None], sign=-1.0), data, n=300, sets=["noise", "train"])
    m = flipped.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["auroc/noise"] < 0.01 and abs(m["auroc/train"] - 0.5) < 0.1


def test_ood_leaves_digits_out_for_digits_data_and_colour_images():
    energy = Quadratic(torch.zeros(1, 3, 8, 8))
    colour = ImageData(torch.zeros(10, 3, 8, 8), heldout=Batch(torch.zeros(5, 3, 8, 8)))
    ctx = BuildContext(event_shape=(3, 8, 8), built={"data": colour, "energy": energy})
    assert ctx.build("task", "ood").sets == ("noise", "flip", "gaussian")
    digits = DigitsData(torch.zeros(10, 1, 8, 8), name="digits")
    ctx = BuildContext(event_shape=(1, 8, 8), built={"data": digits, "energy": energy})
    assert "digits" not in ctx.build("task", "ood").sets


# --- in a recipe -----------------------------------------------------------------------------------

RECIPE = {
    "run": {"steps": 2, "eval_samples": 16, "log_every": 1},
    "data": {"type": "digits", "batch_size": 32},
    "energy": {"type": "mlp", "hidden": [32]},
    "sampler": {"type": "langevin", "n_steps": 5, "step_size": 0.01},
    "generator": {"type": "uniform"},
    "objective": {"type": "mle"},
    "tasks": {"fill": {"type": "inpaint", "n": 16, "hole": 4},
              "clean": {"type": "denoise", "n": 16, "n_steps": 2},
              "ood": {"type": "ood", "n": 50}},
}


def test_recipe_problems_in_image_tasks_name_their_path():
    bad = copy.deepcopy(RECIPE)
    bad["tasks"]["ood"]["sets"] = ["nosie"]
    bad["tasks"]["fill"]["region"] = "center"
    bad["tasks"]["clean"]["type"] = "denoize"
    with pytest.raises(RecipeError) as info:
        parse_recipe(bad, default_host().registry)
    problems = dict(info.value.problems)
    assert "did you mean 'noise'" in problems["$.tasks.ood.sets"]
    assert "did you mean 'centre'" in problems["$.tasks.fill.region"]
    assert "unknown task 'denoize' (did you mean 'denoise'?)" in problems["$.tasks.clean.type"]


def test_image_tasks_run_at_the_end_of_a_digits_recipe(tmp_path):
    out = tmp_path / "run"
    record = ebmcore.train.run_recipe(RECIPE, out=str(out), progress=False)
    results = json.loads((out / "tasks.json").read_text())
    assert set(results) == {"fill", "clean", "ood"}
    assert {"mse", "mse_mean_fill", "mse_noise_fill"} <= set(results["fill"])
    assert {"auroc/noise", "auroc/flip", "auroc/gaussian"} <= set(results["ood"])  # digits data: no digits set
    assert record["fill/mse"] == results["fill"]["mse"]
    for name in ("fill/inpaint.png", "clean/denoise.png", "ood/ood.png"):
        assert (out / "tasks" / name).exists()
    with pytest.raises(EbmError, match=r"\$\.tasks\.fill: cannot build task 'inpaint'.*leaves nothing"):
        bad = copy.deepcopy(RECIPE)
        bad["tasks"]["fill"]["hole"] = 8
        ebmcore.train.run_recipe(bad, out=str(tmp_path / "bad"), progress=False)


def test_averaging_chains_from_the_mean_image_lowers_the_error_of_one_sample(tmp_path):
    energy, _, _ = _smooth_gaussian()
    data = _data(energy)
    # at T = 1 one completion is a draw from the conditional (MSE ≈ 2·Var); the mean of 4 is closer
    task = _build("inpaint", energy, data, ULA(step_size=0.001, n_steps=300), n=100, hole=4,
                  fill="mean", chains=4)
    m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["mse"] < 0.8 * m["mse_one_chain"] and m["mse_one_chain"] < m["mse_mean_fill"], m
    assert m["mse_noise_fill"] > m["mse_mean_fill"]  # the noise yardstick is still noise
