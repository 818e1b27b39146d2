"""The RBM energies against brute force: the free energy sums the hidden units out, log Z
sums both layers (or integrates the Gaussian one), and the configs are checked by key."""

import math

import pytest
import torch
from ebm_image import DigitsConfig, DigitsData
from ebm_rbm import BernoulliRBM, GaussianRBM, exact_log_partition
from ebm_rbm.partition import _states

from ebmcore import BuildContext, EbmError, RecipeError


def _random(cls, d, h, scale=1.0, seed=0):
    torch.manual_seed(seed)
    rbm = cls(d, h, init_std=scale)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


def _joint(rbm, v, h):
    """E(v, h) of every pair, (len(v), len(h)), in float64."""
    w, b, c = (t.detach().double() for t in rbm.params())
    base = rbm.visible_base(v).double()
    return (base - v @ b)[:, None] - v @ w @ h.T - (h @ c)[None]


@pytest.mark.parametrize("cls", [BernoulliRBM, GaussianRBM])
def test_free_energy_is_minus_log_sum_over_hidden_states_of_exp_minus_joint(cls):
    rbm = _random(cls, 6, 4)
    v = _states(6) if cls is BernoulliRBM else torch.randn(50, 6, dtype=torch.float64)
    brute = -torch.logsumexp(-_joint(rbm, v, _states(4)), 1)
    # image-shaped batches are flattened
    assert torch.allclose(rbm(v.float().view(-1, 1, 2, 3)).double(), brute, atol=1e-5)


def test_exact_log_z_sums_both_layers_whichever_is_enumerated():
    for d, h in ((5, 3), (3, 5)):  # the hidden layer, then the visible one, is the smaller
        rbm = _random(BernoulliRBM, d, h)
        brute = torch.logsumexp(-_joint(rbm, _states(d), _states(h)).flatten(), 0)
        assert exact_log_partition(rbm) == pytest.approx(float(brute), abs=1e-10)


def test_exact_log_z_of_a_gaussian_rbm_equals_quadrature():
    rbm = _random(GaussianRBM, 2, 3, scale=0.7)
    axis = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    cell = float(axis[1] - axis[0]) ** 2
    with torch.no_grad():
        quad = float(torch.logsumexp(-rbm.free_energy(grid, rbm.params()._make(
            t.detach().double() for t in rbm.params())), 0)) + math.log(cell)
    assert exact_log_partition(rbm) == pytest.approx(quad, abs=1e-6)


def test_exact_log_z_refuses_two_wide_layers():
    with pytest.raises(EbmError, match="at most 20"):
        exact_log_partition(BernoulliRBM(30, 21))


@pytest.fixture(scope="module")
def digits():
    return DigitsData.from_config(DigitsConfig(binarize="threshold", heldout=100))


def _ctx(data):
    return BuildContext(event_shape=data.event_shape, built={"data": data})


def test_visible_biases_start_at_the_log_odds_of_the_pixels(digits):
    rbm = _ctx(digits).build("energy", "rbm", hidden=16)
    p = (digits.x.flatten(1).sum(0) + 1) / (len(digits.x) + 2)  # smoothed by one count each way
    assert torch.allclose(rbm.visible_bias.detach(), (p / (1 - p)).log().float(), atol=1e-5)
    assert rbm.weight.shape == (64, 16) and 0.008 < float(rbm.weight.detach().std()) < 0.012
    assert float(rbm.hidden_bias.detach().abs().max()) == 0
    gaussian = _ctx(digits).build("energy", "gaussian_rbm", hidden=16)
    assert torch.allclose(gaussian.visible_bias.detach(), digits.x.flatten(1).mean(0), atol=1e-6)


def test_grey_data_and_bad_keys_are_named(digits):
    grey = DigitsData.from_config(DigitsConfig(heldout=100))
    with pytest.raises(EbmError, match="binarize"):
        _ctx(grey).build("energy", "rbm", hidden=16)
    with pytest.raises(RecipeError, match=r"\$\.energy\.hidden: must be > 0"):
        _ctx(digits).build("energy", "rbm", hidden=0)
    with pytest.raises(RecipeError, match=r"\$\.energy\.hiden: unknown key \(did you mean 'hidden'\?\)"):
        _ctx(digits).build("energy", "rbm", hiden=16)


def test_the_filters_task_refuses_an_energy_that_is_not_an_rbm(digits):
    ctx = _ctx(digits)
    ctx.built["energy"] = ctx.build("energy", "mlp", hidden=[8])
    with pytest.raises(EbmError, match="task 'rbm_filters' draws an RBM's weights; the energy is a MLPEnergy"):
        ctx.build("task", "rbm_filters")


def test_the_filters_task_draws_gibbs_chains_over_sweeps(digits, tmp_path):
    from PIL import Image

    from ebm_rbm.tasks import sweep_marks

    assert sweep_marks(1000) == [0, 1, 3, 10, 30, 100, 300, 1000] and sweep_marks(10) == [0, 1, 3, 10]
    ctx = _ctx(digits)
    ctx.built["energy"] = ctx.build("energy", "rbm", hidden=16)
    task = ctx.build("task", "rbm_filters", chains=3, sweeps=10, examples=20)
    metrics = task.run(None, digits, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert set(metrics) == {"pll/heldout"}
    with Image.open(tmp_path / "gibbs.png") as im:  # 3 chains (rows) × 4 frames (columns) of 8×8 cells
        assert 1.2 < im.width / im.height < 1.45, im.size
    assert (tmp_path / "filters.png").exists()
