import math

import numpy as np
import pytest
import torch
from ebm_toy.datasets import sample_toy
from PIL import Image

from ebmcore.kit.metrics import fitted_gaussian, mmd2
from ebmcore.kit.pictures import _density_grid, density_png, scatter_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def naive_mmd2(x, y, h):
    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h))

    x, y = x.double().tolist(), y.double().tolist()
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_naive_unbiased_double_loop():
    g = gen(0)
    x = torch.randn(17, 3, generator=g)
    y = torch.randn(11, 3, generator=g) + 0.3
    for h in (0.3, 1.0, 2.5):
        assert abs(mmd2(x, y, h) - naive_mmd2(x, y, h)) < 1e-10


def test_mmd2_is_symmetric_and_returns_a_python_float():
    x = sample_toy("two_moons", 300, rng=gen(1))
    y = sample_toy("rings", 200, rng=gen(2))
    v = mmd2(x, y, 0.5)
    assert type(v) is float
    assert abs(v - mmd2(y, x, 0.5)) < 1e-12


def test_mmd2_of_identical_point_sets_is_negative_not_clipped():
    # Unbiased: with x == y the cross term keeps its diagonal (k = 1) while
    # the within terms do not, so the estimate is exactly -2/n * (1 - mean offdiag).
    x = torch.randn(50, 2, generator=gen(3))
    assert mmd2(x, x, 1.0) < 0


def test_mmd2_near_zero_for_same_distribution_and_positive_for_shifted():
    # For eight_gaussians, n = m = 500, h = 0.5 the estimator's sd under equal
    # distributions is ~0.0019 (measured over 100 replicates), so 0.01 is ~5 sd.
    tol = 0.01
    x = sample_toy("eight_gaussians", 500, rng=gen(4))
    y = sample_toy("eight_gaussians", 500, rng=gen(5))
    assert abs(mmd2(x, y, 0.5)) < tol
    shifted = y + torch.tensor([0.5, 0.0])
    assert mmd2(x, shifted, 0.5) > 3 * tol  # measured ~0.09


def test_mmd2_rejects_bad_shapes_and_bandwidth():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError):
        mmd2(x, torch.zeros(5, 3), 1.0)
    with pytest.raises(ValueError):
        mmd2(x, torch.zeros(1, 2), 1.0)
    with pytest.raises(ValueError):
        mmd2(x, x, 0.0)


def test_gaussian_baseline_has_train_mean_and_covariance():
    train = sample_toy("two_moons", 2000, rng=gen(6))
    s = fitted_gaussian(train, 200_000, rng=gen(7))
    assert s.shape == (200_000, 2) and s.dtype == torch.float32
    t, s = train.double(), s.double()
    # Mean error sd is sqrt(var / 2e5) < 0.005 here; cov relative error ~0.3 %.
    assert torch.allclose(s.mean(0), t.mean(0), atol=0.02)
    assert torch.allclose(torch.cov(s.T), torch.cov(t.T), rtol=0.03, atol=0.02)


def test_gaussian_baseline_is_deterministic_per_rng_and_beaten_by_real_data():
    train = sample_toy("eight_gaussians", 2000, rng=gen(8))
    a = fitted_gaussian(train, 500, rng=gen(9))
    assert torch.equal(a, fitted_gaussian(train, 500, rng=gen(9)))
    test = sample_toy("eight_gaussians", 500, rng=gen(10))
    fresh = sample_toy("eight_gaussians", 500, rng=gen(11))
    assert mmd2(test, a, 0.5) > 0.03 > abs(mmd2(test, fresh, 0.5))


def assert_png_with_content(path, min_aspect=0.0):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.load()
        assert img.width >= min_aspect * img.height
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 1  # None means very many colours


def test_scatter_png_writes_a_nonblank_png(tmp_path):
    path = tmp_path / "scatter.png"
    scatter_png(sample_toy("pinwheel", 1000, rng=gen(0)), path, bounds=(-4.5, 4.5), title="pinwheel")
    assert_png_with_content(path)


def mixture_energy(z):
    # Unequal modes at (2, -1) and (-1.5, 1.5): an asymmetric test density.
    a = torch.exp(-((z - torch.tensor([2.0, -1.0])) ** 2).sum(1) / (2 * 0.3**2))
    b = 0.3 * torch.exp(-((z - torch.tensor([-1.5, 1.5])) ** 2).sum(1) / (2 * 0.5**2))
    return -torch.log(a + b + 1e-30)


def test_density_png_writes_three_panel_png_evaluating_energy_in_no_grad_chunks(tmp_path):
    calls = []

    def energy(z):
        calls.append((z.shape, z.dtype, torch.is_grad_enabled()))
        return mixture_energy(z)

    data = sample_toy("eight_gaussians", 500, rng=gen(0))
    path = tmp_path / "density.png"
    density_png(data, data + 0.1, energy, path, bounds=(-3, 3), resolution=200)
    assert_png_with_content(path, min_aspect=2.5)  # three square panels side by side
    assert all(shape[0] <= 20_000 and shape[1:] == (2,) for shape, _, _ in calls)
    assert sum(shape[0] for shape, _, _ in calls) == 200 * 200
    assert all(dtype == torch.float32 and not grad for _, dtype, grad in calls)


def test_density_grid_is_normalised_and_oriented_rows_y_columns_x():
    res, (lo, hi) = 121, (-3.0, 3.0)
    dens = _density_grid(mixture_energy, (lo, hi), res)
    cell = ((hi - lo) / (res - 1)) ** 2
    assert np.isfinite(dens).all() and abs(dens.sum() * cell - 1) < 1e-9
    row, col = np.unravel_index(dens.argmax(), dens.shape)
    axis = np.linspace(lo, hi, res)
    assert abs(axis[col] - 2.0) < 0.06 and abs(axis[row] + 1.0) < 0.06  # x = 2, y = -1


def test_density_grid_survives_huge_and_nonfinite_energies():
    def energy(z):
        e = 1e4 * z[:, 0]  # exp(-E) would overflow without subtracting the max
        e[0] = float("nan")
        return e

    dens = _density_grid(energy, (-1.0, 1.0), 50)
    assert np.isfinite(dens).all() and dens[0, 0] == 0 and dens.max() > 0
