"""log Z by AIS against enumeration, pseudo-log-likelihood against scikit-learn, and the
loglik task on an RBM."""

import math

import numpy as np
import pytest
import torch
from ebm_image import DigitsConfig, DigitsData
from ebm_likelihood import LogLik, LogLikConfig
from ebm_rbm import (
    BernoulliRBM,
    GaussianRBM,
    Gibbs,
    ais_log_partition,
    exact_log_partition,
    pseudo_log_likelihood,
    rbm_betas,
)
from sklearn.neural_network import BernoulliRBM as SkBernoulliRBM

from ebmcore import BuildContext, EbmError


def test_the_full_schedule_is_salakhutdinov_and_murrays():
    betas = np.array(rbm_betas(14500))
    steps = np.diff(betas)
    assert len(betas) == 14501 and betas[0] == 0 and betas[-1] == 1
    assert np.allclose(steps[:500], 1e-3) and np.allclose(steps[500:4500], 1e-4) and np.allclose(steps[4500:], 1e-5)
    assert len(rbm_betas(10)) == 11
    with pytest.raises(ValueError, match="at least 3"):
        rbm_betas(2)


def _mnist_like(seed=0) -> BernoulliRBM:
    """784 visible units, 15 hidden: weights of a trained RBM's scale (hidden pre-activations
    of about ±3), visible biases of sparse images (most pixels off)."""
    torch.manual_seed(seed)
    rbm = BernoulliRBM(784, 15, init_std=0.3)
    with torch.no_grad():
        rbm.visible_bias.normal_(-2.0, 1.5)
        rbm.hidden_bias.normal_(-1.0, 1.0)
    return rbm


def test_ais_log_z_is_within_a_tenth_of_a_nat_of_enumeration(one_thread):
    rbm = _mnist_like()
    exact = exact_log_partition(rbm)
    # the base-rate model of 500 Gibbs draws of the model itself, as data would give
    draws = Gibbs(n_steps=200).run(torch.zeros(500, 784), rbm, rng=torch.Generator().manual_seed(1))
    est = ais_log_partition(rbm, rbm.visible_fit(draws), chains=100, betas=rbm_betas(2000),
                            rng=torch.Generator().manual_seed(2))
    # measured: −0.006 (standard error 0.017, ESS 97 of 100); two models × three seeds, and
    # weights of std 0.5: within 0.035
    assert abs(est.log_z - exact) < 0.1
    assert est.std_error < 0.05 and est.ess > 50


def test_ais_weights_are_unbiased_even_along_a_short_path(one_thread):
    """20 steps of β from a base far from the model: each chain's weight is a noisy but
    unbiased estimate of Z, so 20,000 of them average to it within their standard error
    (a wrong weight increment or transition would be biased by far more)."""
    torch.manual_seed(0)
    rbm = BernoulliRBM(10, 4, init_std=1.0)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    exact = exact_log_partition(rbm)
    for seed, base in enumerate((torch.zeros(10), torch.randn(10, generator=torch.Generator().manual_seed(9)))):
        est = ais_log_partition(rbm, base, chains=20_000, betas=rbm_betas(20), rng=torch.Generator().manual_seed(seed))
        assert abs(est.log_z - exact) < 4 * est.std_error < 0.1  # measured: +0.009 ± 0.009, −0.004 ± 0.016


def test_pseudo_log_likelihood_is_scikit_learns_score_samples():
    rng = np.random.RandomState(0)
    v = (rng.rand(50, 64) < 0.3).astype(np.float64)
    sk = SkBernoulliRBM(n_components=16, random_state=7).fit(v)  # any weights will do
    rbm = BernoulliRBM(64, 16)
    with torch.no_grad():
        rbm.weight.copy_(torch.from_numpy(sk.components_.T))
        rbm.visible_bias.copy_(torch.from_numpy(sk.intercept_visible_))
        rbm.hidden_bias.copy_(torch.from_numpy(sk.intercept_hidden_))
    # score_samples flips one unit per row, drawn by RandomState(random_state).randint(0, 64, 50)
    flipped = np.random.RandomState(7).randint(0, 64, 50)
    theirs = sk.score_samples(v)
    ours = pseudo_log_likelihood(rbm, torch.from_numpy(v).float(), index=torch.from_numpy(flipped))
    assert np.allclose(ours.double().numpy(), theirs, atol=1e-4)


def test_pseudo_log_likelihood_refuses_real_valued_units():
    with pytest.raises(EbmError, match="real-valued"):
        pseudo_log_likelihood(GaussianRBM(4, 2), torch.zeros(3, 4), rng=torch.Generator())


@pytest.fixture(scope="module")
def digits():
    return DigitsData.from_config(DigitsConfig(binarize="threshold", heldout=200))


def test_loglik_task_scores_an_rbm_by_its_own_log_z_beside_bernoulli_yardsticks(digits, tmp_path, one_thread):
    """A 64 × 12 RBM: the exact sum and AIS give the same held-out nats; the yardsticks are
    probability masses (independent pixels fitted to the training set, and uniform)."""
    torch.manual_seed(0)
    ctx = BuildContext(event_shape=digits.event_shape, built={"data": digits})
    rbm = ctx.build("energy", "rbm", hidden=12, init_std=0.3)
    ctx.built["energy"] = rbm
    task = LogLik.from_config(LogLikConfig(chains=64, betas=1000), ctx)
    m = task.run(None, digits, rng=torch.Generator().manual_seed(1), out=tmp_path)
    assert m["log_z/exact"] == pytest.approx(exact_log_partition(rbm))
    assert abs(m["nats/ais"] - m["nats/exact"]) < 0.1
    with torch.no_grad():
        held = digits.heldout().x
        direct = float((-rbm(held).double() - m["log_z/exact"]).mean())
    assert m["nats/exact"] == pytest.approx(direct, abs=1e-6)
    assert m["nats/uniform"] == pytest.approx(-64 * math.log(2), abs=1e-6)
    assert {"nats/bernoulli", "ess/ais", "log_z_se/ais"} <= set(m) and "nats/gaussian" not in m
    assert (tmp_path / "ais.png").stat().st_size > 0
    with pytest.raises(EbmError, match="bin_width must be 0"):
        LogLik.from_config(LogLikConfig(bin_width=0.125), ctx).run(None, digits, rng=torch.Generator(), out=tmp_path)
