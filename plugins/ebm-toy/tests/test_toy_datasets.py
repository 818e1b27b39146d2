import math

import pytest
import torch
from ebm_toy.datasets import TOY_DATASETS, data_bounds, sample_toy


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_each_dataset_returns_finite_float32_points_of_shape_n_by_2(name):
    x = sample_toy(name, 1000, rng=gen(0))
    assert x.shape == (1000, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_each_dataset_lies_within_its_bounds_and_fills_them(name):
    lo, hi = data_bounds(name)
    assert lo < hi
    x = sample_toy(name, 4000, rng=gen(1))
    inside = ((x >= lo) & (x <= hi)).all(dim=1).float().mean().item()
    # Gaussian tails may leave a stray point out; a plotting range must hold the rest.
    assert inside >= 0.999
    # The range is not needlessly wide: on some axis the data span half of it.
    span = (x.max(dim=0).values - x.min(dim=0).values).max().item()
    assert span >= 0.5 * (hi - lo)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_same_seed_gives_same_data_and_other_seed_other_data(name):
    a = sample_toy(name, 500, rng=gen(7))
    b = sample_toy(name, 500, rng=gen(7))
    c = sample_toy(name, 500, rng=gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_sampling_neither_reads_nor_advances_the_global_rng(name):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sample_toy(name, 300, rng=gen(3))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state must not change the data
    assert torch.equal(sample_toy(name, 300, rng=gen(3)), a)


def test_unknown_name_raises_value_error_listing_valid_names():
    with pytest.raises(ValueError, match="eight_gaussians.*pinwheel"):
        sample_toy("spiral", 10, rng=gen(0))
    with pytest.raises(ValueError, match="two_moons"):
        data_bounds("spiral")


def test_zero_points_gives_empty_tensor_and_negative_n_raises():
    assert sample_toy("rings", 0, rng=gen(0)).shape == (0, 2)
    with pytest.raises(ValueError):
        sample_toy("rings", -1, rng=gen(0))


def test_eight_gaussians_has_equal_weight_modes_at_radius_2_with_std_0_02():
    n = 8000
    x = sample_toy("eight_gaussians", n, rng=gen(0)).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    mode = torch.cdist(x, centres).argmin(dim=1)
    counts = torch.bincount(mode, minlength=8)
    # Binomial(8000, 1/8): sd ~ 29.6, so allow 4.5 sd around 1000 per mode.
    sd = math.sqrt(n * (1 / 8) * (7 / 8))
    assert ((counts - n / 8).abs() <= 4.5 * sd).all(), counts
    for k in range(8):
        pts = x[mode == k]
        # Centre error sd is 0.02 / sqrt(1000) ~ 6e-4, so 0.005 is a loose bound.
        assert torch.allclose(pts.mean(dim=0), centres[k], atol=0.005)
        # Std estimate from ~1000 points has ~2.2 % relative error; allow 10 %.
        std = pts.std(dim=0)
        assert ((std - 0.02).abs() <= 0.002).all(), (k, std)


def test_rings_are_four_equal_circles_of_radius_half_to_two():
    x = sample_toy("rings", 4000, rng=gen(2)).double()
    r = x.norm(dim=1)
    ring = torch.round(r / 0.5).long()  # nearest of 0.5, 1, 1.5, 2
    assert set(ring.tolist()) == {1, 2, 3, 4}
    assert ((r - 0.5 * ring).abs() < 0.25).all()  # noise is 0.05: 5 sd
    counts = torch.bincount(ring, minlength=5)[1:]
    assert ((counts - 1000).abs() <= 4.5 * math.sqrt(4000 * 0.25 * 0.75)).all(), counts


def test_checkerboard_points_fall_only_on_black_squares_evenly():
    x = sample_toy("checkerboard", 8000, rng=gen(4)).double()
    cell = torch.floor(x / 2).long()  # 2x2 squares indexed -2..1 on each axis
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    counts = torch.bincount((cell[:, 0] + 2) * 4 + (cell[:, 1] + 2), minlength=16)
    black = counts[counts > 0]
    assert len(black) == 8
    assert ((black - 1000).abs() <= 4.5 * math.sqrt(8000 / 8 * 7 / 8)).all(), counts


def test_swiss_roll_radius_grows_with_the_roll_up_to_2_5():
    x = sample_toy("swiss_roll", 4000, rng=gen(5)).double()
    r = x.norm(dim=1)
    assert 0.3 < r.min() and r.max() < 2.5 + 0.6  # radii 0.83..2.5, noise sd 0.1
