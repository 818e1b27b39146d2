import torch
from ebm_toy import MLPEnergy, ToyData

from ebmcore.kit.metrics import fitted_gaussian


def test_toy_data_is_fixed_by_its_own_seed_and_train_and_test_differ():
    a, b = ToyData("two_moons", n_train=100, n_test=50), ToyData("two_moons", n_train=100, n_test=50)
    assert torch.equal(a.train, b.train) and a.train.shape == (100, 2) and a.test.shape == (50, 2)
    assert not torch.equal(a.train[:50], a.test)
    assert not torch.equal(a.train, ToyData("two_moons", n_train=100, seed=1).train)


def test_toy_scores_stand_beside_their_yardsticks():
    """Samples of the true distribution score near the held-out floor, far below the fitted
    Gaussian and noise (at h = 0.5 the Gaussian, a blob where the ring of modes has a hole,
    is even further than uniform noise); the yardsticks use as many points as the samples."""
    data = ToyData("eight_gaussians", n_train=4000, n_test=2000)
    good = data.evaluate(data.train[:2000])
    assert set(good) == {"mmd2", "mmd2/heldout", "mmd2/noise", "mmd2/gaussian", "mmd2/vs_gaussian", "mmd2/h0.1"}
    assert abs(good["mmd2"]) < 0.002 and abs(good["mmd2/heldout"]) < 0.002
    assert good["mmd2/gaussian"] > good["mmd2/noise"] > 0.05
    assert good["mmd2/vs_gaussian"] == good["mmd2"] / good["mmd2/gaussian"] < 0.05
    gaussian_fit = data.evaluate(fitted_gaussian(data.train, 500, rng=torch.Generator().manual_seed(3)))
    assert 0.8 < gaussian_fit["mmd2/vs_gaussian"] < 1.25  # another draw of the same Gaussian
    assert data.yardsticks(500) is not data.yardsticks(2000) and data.yardsticks(500) == data.yardsticks(500)


def test_mlp_energy_gives_one_energy_per_example_and_flattens():
    e = MLPEnergy(in_features=6, hidden=(8,))
    assert e(torch.randn(5, 2, 3)).shape == (5,)


def test_reference_term_adds_a_gaussian_energy():
    torch.manual_seed(0)
    plain = MLPEnergy(2, (8,))
    ref = MLPEnergy(2, (8,), reference_std=0.5)
    ref.load_state_dict(plain.state_dict())
    x = torch.randn(4, 2)
    assert torch.allclose(ref(x) - plain(x), x.pow(2).sum(1) / (2 * 0.25))


def test_spectral_norm_bounds_every_layer():
    e = MLPEnergy(2, (16, 16), spectral_norm=True)
    for _ in range(20):  # power iterations run in training mode
        e(torch.randn(8, 2))
    e.eval()
    for layer in e.net:
        if isinstance(layer, torch.nn.Linear):
            assert torch.linalg.matrix_norm(layer.weight, ord=2) < 1.05
