import json

import pytest
import torch
from ebm_image import DigitsConfig, DigitsData
from ebm_image import classifier as clf
from ebm_image.metrics import class_coverage, frechet_distance, gaussian_stats

from ebmcore import BuildContext, EbmError
from ebmcore.kit.likelihood import GaussianBase


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    """One cache for the module: the digits classifier is trained once, not per test."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EBM_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(clf, "MIN_STEPS", 30)  # a toy problem: a few steps suffice
    return tmp_path / "cache"


# --- energies -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["swish_cnn", "genconvnet", "resnet"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 16, 12)])
def test_image_energies_give_one_finite_energy_and_gradient_per_image(name, shape):
    energy = BuildContext(event_shape=shape).build("energy", name)
    x = torch.rand(5, *shape, requires_grad=True) * 2 - 1
    e = energy(x)
    assert e.shape == (5,) and torch.isfinite(e).all()
    (g,) = torch.autograd.grad(e.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # examples do not interact: the energy of one image does not depend on the others
    assert torch.allclose(energy(x[:2]), e[:2], atol=1e-5)


@pytest.mark.parametrize("name", ["swish_cnn", "genconvnet", "resnet"])
def test_image_energies_refuse_vector_data_naming_themselves(name):
    with pytest.raises(ValueError, match=f"energy '{name}' needs images"):
        BuildContext(event_shape=(2,)).build("energy", name)


def test_the_reference_term_makes_far_images_improbable():
    torch.manual_seed(0)
    energy = BuildContext(event_shape=(1, 8, 8)).build("energy", "genconvnet", reference_std=0.5)
    x = torch.zeros(1, 1, 8, 8)
    without = BuildContext(event_shape=(1, 8, 8)).build("energy", "genconvnet", reference_std=None)
    without.load_state_dict(energy.state_dict())
    far = torch.full((1, 1, 8, 8), 3.0)
    # the Gaussian term is exactly ‖x‖²/2σ² on top of the network
    assert torch.allclose(energy(far) - without(far), torch.tensor([64 * 9 / (2 * 0.25)]))
    assert torch.allclose(energy(x), without(x))


def test_reference_fit_adds_the_fitted_gaussians_energy_and_needs_data():
    """``reference_fit``: E = network + −log N(x; μ̂, Σ̂ + v·I) of the training images."""
    torch.manual_seed(0)
    data = DigitsData.from_config(DigitsConfig())
    ctx = BuildContext(event_shape=(1, 8, 8), built={"data": data})
    energy = ctx.build("energy", "swish_cnn", reference_fit=0.0013)
    without = BuildContext(event_shape=(1, 8, 8)).build("energy", "swish_cnn")
    without.load_state_dict({k: v for k, v in energy.state_dict().items() if not k.startswith("reference.")})
    x = data.heldout().x[:16]
    fitted = GaussianBase.fit(data.dataset().x, ridge=0.0013)
    torch.testing.assert_close(energy(x) - without(x), fitted(x), rtol=1e-5, atol=1e-3)
    with pytest.raises(EbmError, match="energy 'swish_cnn' needs a \\[data\\] section"):
        BuildContext(event_shape=(1, 8, 8)).build("energy", "swish_cnn", reference_fit=0.0013)


def test_spectral_norm_resnet_keeps_its_layers_unit_norm_after_power_iterations():
    energy = BuildContext(event_shape=(1, 8, 8)).build("energy", "resnet", spectral_norm=True)
    energy.train()
    for _ in range(20):
        energy(torch.randn(4, 1, 8, 8))
    head = energy.head
    sigma = torch.linalg.matrix_norm(head.weight.detach(), ord=2)
    assert abs(float(sigma) - 1) < 0.05


# --- Fréchet distance and coverage ----------------------------------------------------------

def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    mu_a, mu_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    got = frechet_distance((mu_a.double(), torch.diag(var_a).double()),
                           (mu_b.double(), torch.diag(var_b).double()))
    want = (mu_a - mu_b).pow(2).sum() + (var_a.sqrt() - var_b.sqrt()).pow(2).sum()
    assert got == pytest.approx(float(want), abs=1e-9)


def test_frechet_distance_of_a_sample_with_itself_is_zero_and_grows_with_a_shift():
    f = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(gaussian_stats(f), gaussian_stats(f)) == pytest.approx(0, abs=1e-6)
    shifted = frechet_distance(gaussian_stats(f + 1), gaussian_stats(f))
    assert shifted == pytest.approx(6.0, rel=1e-6)


def test_class_coverage_counts_classes_with_a_fifth_of_a_fair_share():
    pred = torch.tensor([0] * 50 + [1] * 45 + [2] * 5)  # shares .5, .45, .05 of 4 classes
    got = class_coverage(pred, 4)
    assert got["classes/covered"] == 3  # a fair share is .25, a fifth of it .05: class 2 counts, 3 does not
    assert got["classes/max_share"] == 0.5
    assert class_coverage(torch.arange(4).repeat(10), 4)["classes/entropy"] == pytest.approx(1.0)
    assert class_coverage(torch.zeros(10, dtype=torch.long), 4)["classes/entropy"] == 0


# --- the cached classifier ------------------------------------------------------------------

def test_digits_classifier_is_trained_once_cached_as_safetensors_and_reloaded(digits_cache, monkeypatch):
    data = DigitsData.from_config(DigitsConfig())
    held = data.heldout()
    model, info = clf.load_or_train(data.x, data.labels, 10, name="digits", heldout=(held.x, held.cond))
    assert info["accuracy"] > 0.9
    files = sorted(p.suffix for p in digits_cache.iterdir())
    assert files == [".json", ".lock", ".safetensors"]  # nothing pickled (the lock file is empty)

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    again, info2 = clf.load_or_train(data.x, data.labels, 10, name="digits")
    assert info2 == info
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


TRAIN_TINY = """
import sys, torch
from ebm_image import classifier as clf
clf.MIN_STEPS = 30
g = torch.Generator().manual_seed(0)
x = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
clf.load_or_train(x, (x.mean((1, 2, 3)) > 0).long(), 2, name="tiny")
"""


def test_a_process_waits_for_another_training_the_classifier_then_reads_its_cache(cache):
    import fcntl
    import subprocess
    import sys
    import time

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
    y = (x.mean((1, 2, 3)) > 0).long()
    path = cache / f"classifier-{clf._key(x, y, 2)}.safetensors"
    cache.mkdir()
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # this process is training it
        log = cache.parent / "other.log"
        with open(log, "w") as err:
            other = subprocess.Popen([sys.executable, "-c", TRAIN_TINY], stderr=err)
        deadline = time.monotonic() + 60
        while "waiting for another process" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "waiting for another process" in log.read_text() and other.poll() is None
        clf._train_and_cache(path, x, y, 2, name="tiny", heldout=None)
    assert other.wait(timeout=60) == 0
    assert "training the" not in log.read_text()  # it read the cache written while it waited


def test_an_unwritable_cache_is_an_error_naming_it_and_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EBM_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with pytest.raises(EbmError, match=r"file/cache/classifier-.*\.lock: cannot open .*EBM_CACHE_DIR"):
        clf.load_or_train(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), 2, name="tiny")


def test_a_tampered_classifier_cache_is_rebuilt_not_trusted(cache):
    x = torch.rand(64, 1, 4, 4) * 2 - 1
    y = (x.mean((1, 2, 3)) > 0).long()
    clf.load_or_train(x, y, 2, name="tiny")
    (blob,) = cache.glob("*.safetensors")
    blob.write_bytes(blob.read_bytes()[:-8] + bytes(8))
    _, info = clf.load_or_train(x, y, 2, name="tiny")
    assert json.loads(blob.with_suffix(".json").read_text())["sha256"] == info["sha256"]
    clf.load_or_train(x, y, 2, name="tiny")  # and the rebuilt file loads


def test_digits_metrics_put_held_out_digits_near_the_floor_and_noise_at_the_ceiling(digits_cache):
    data = DigitsData.from_config(DigitsConfig())
    held = data.heldout().x
    real = data.evaluate(held)
    noise = data.evaluate(torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    assert real["fd"] == pytest.approx(real["fd/heldout"])  # the same images as the floor
    assert noise["fd"] > 10 * real["fd"]
    assert noise["fd"] == pytest.approx(real["fd/noise"], rel=0.2)
    assert real["classes/covered"] == 10 and noise["classes/covered"] < 10
    assert data.evaluate(held[:1]) == {}  # one image has no covariance


def test_reference_statistics_are_cached_per_classifier_and_images(digits_cache):
    from ebm_image import metrics

    data = DigitsData.from_config(DigitsConfig())
    model, held = data.classifier(), data.heldout().x
    first = metrics.ClassifierMetrics(model, data.x, held, 10)
    again = metrics.ClassifierMetrics(model, data.x.clone(), held, 10)
    assert again.reference is first.reference  # computed once per process
    moved = clf.Classifier(1, 10)  # other weights: other features
    other = metrics.ClassifierMetrics(moved, data.x, held, 10)
    assert not torch.equal(other.reference[0], first.reference[0])
    fresh = metrics.gaussian_stats(moved.embed(data.x[torch.randperm(len(data.x), generator=torch.Generator()
                                                                      .manual_seed(0))])[0])
    assert torch.allclose(other.reference[0], fresh[0]) and torch.allclose(other.reference[1], fresh[1])
