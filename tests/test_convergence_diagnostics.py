"""Rank-normalized split R-hat, bulk and tail ESS (ebmcore.kit.diagnostics; Vehtari et al. 2021).

Each diagnostic is checked on chains whose answer is known: independent draws (R-hat 1,
ESS the number of draws), AR(1) chains (ESS n·(1−φ)/(1+φ)), chains that disagree in
location or only in scale (R-hat above 1), Cauchy draws (no variance, R-hat still 1), and
a small array against a pure-Python transcription of the definitions.
"""

import math
import statistics

import pytest
import torch

from ebmcore.kit.diagnostics import (
    effective_sample_size,
    ess_bulk,
    ess_tail,
    rhat,
    rhat_bulk,
    rhat_folded,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _normal(n, m, seed, d=None):
    shape = (n, m) if d is None else (n, m, d)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_independent_draws_have_rhat_1_and_ess_their_number():
    x = _normal(1000, 4, seed=0, d=3)
    r, bulk, tail = rhat(x), ess_bulk(x), ess_tail(x)
    assert r.shape == bulk.shape == tail.shape == (3,) and r.dtype == torch.float64
    assert ((r - 1).abs() < 0.01).all(), r.tolist()
    assert ((bulk / 4000 - 1).abs() < 0.15).all(), bulk.tolist()
    assert ((tail / 4000 - 1).abs() < 0.15).all(), tail.tolist()


def test_bulk_ess_of_ar1_chains_is_n_times_1_minus_phi_over_1_plus_phi():
    phi, n, m = 0.9, 20000, 4
    eps = _normal(n, m, seed=1)
    x = torch.empty_like(eps)
    x[0] = eps[0] / math.sqrt(1 - phi**2)  # stationary from the start
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    exact = n * m * (1 - phi) / (1 + phi)  # 4210.5
    bulk = ess_bulk(x)
    assert bulk.dim() == 0 and abs(bulk / exact - 1) < 0.2, (bulk.item(), exact)


def test_a_chain_offset_by_two_standard_deviations_is_flagged():
    x = _normal(1000, 4, seed=2)
    x[:, 0] += 2.0
    assert rhat(x) > 1.1  # ≈ 1.33


def test_a_chain_three_times_wider_is_flagged_by_the_folded_rhat_only():
    x = _normal(1000, 4, seed=3)
    x[:, 0] *= 3.0  # same mean: the chains agree on location, not on spread
    assert abs(rhat_bulk(x) - 1) < 0.01, rhat_bulk(x).item()
    assert rhat_folded(x) > 1.05, rhat_folded(x).item()  # ≈ 1.14
    assert rhat(x) == rhat_folded(x)


def test_cauchy_draws_have_rhat_near_1_and_a_bulk_ess_near_their_number():
    # no mean, no variance: only the ranks make R-hat and the bulk ESS meaningful here
    u = torch.rand(1000, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = torch.tan(math.pi * (u - 0.5))
    assert x.abs().max() > 1e3  # the draws are heavy-tailed indeed
    r = rhat(x)
    assert r.isfinite() and abs(r - 1) < 0.01, r.item()
    assert abs(ess_bulk(x) / 4000 - 1) < 0.15, ess_bulk(x).item()


def test_a_monotone_transformation_changes_nothing_but_the_folded_rhat():
    # ranks are invariant; folding about the median is not (exp skews the distances)
    x = _normal(200, 3, seed=5)
    for f in (rhat_bulk, ess_bulk, ess_tail):
        assert f(x.exp()).item() == pytest.approx(f(x).item(), rel=1e-12)


def _reference(chains, fold):
    """The definitions transcribed in plain Python on chains (a list of m lists of n draws):
    split, fold about the median if asked, normal scores of average ranks, split R-hat."""
    half = len(chains[0]) // 2
    split = [c[:half] for c in chains] + [c[len(c) - half:] for c in chains]
    if fold:
        median = statistics.median([v for c in split for v in c])
        split = [[abs(v - median) for v in c] for c in split]
    flat = [v for c in split for v in c]
    s = len(flat)

    def score(v):
        rank = sum(w < v for w in flat) + (sum(w == v for w in flat) + 1) / 2
        return statistics.NormalDist().inv_cdf((rank - 3 / 8) / (s + 1 / 4))

    z = [[score(v) for v in c] for c in split]
    w = statistics.mean(statistics.variance(c) for c in z)
    between = statistics.variance([statistics.mean(c) for c in z])  # B/n
    return math.sqrt(((half - 1) / half * w + between) / w)


def test_rhat_and_tail_ess_agree_with_the_definitions_on_a_small_array():
    # 3 chains of 7 steps (odd: the middle step is dropped), with ties across chains
    chains = [[0.3, 1.2, -0.5, 0.3, 2.0, 1.1, 0.9],
              [1.5, 2.5, 1.9, 0.3, 3.1, 2.2, 2.8],
              [-1.0, 0.4, 0.0, -0.2, 1.2, 0.6, -0.7]]
    x = torch.tensor(chains, dtype=torch.float64).T  # (n_steps, n_chains)
    assert rhat_bulk(x).item() == pytest.approx(_reference(chains, fold=False), rel=1e-12)
    assert rhat_folded(x).item() == pytest.approx(_reference(chains, fold=True), rel=1e-12)
    assert rhat_bulk(x) > 1.2  # the second chain sits higher
    # tail ESS: the indicators of the 5 % and 95 % quantiles (linear interpolation, as NumPy)
    q05, *_, q95 = statistics.quantiles([v for c in chains for v in c], n=20, method="inclusive")
    ess = [effective_sample_size(torch.cat([i[:3], i[4:]], 1)) for i in ((x <= q05).double(), (x <= q95).double())]
    assert ess_tail(x).item() == pytest.approx(min(e.item() for e in ess), rel=1e-12)


def test_shapes_and_too_short_chains():
    assert rhat(_normal(10, 2, seed=6, d=5)).shape == (5,)
    assert ess_tail(_normal(10, 2, seed=6)).dim() == 0
    with pytest.raises(ValueError, match="at least 4 steps"):
        rhat(_normal(3, 4, seed=6))
    with pytest.raises(ValueError, match=r"\(n_steps, n_chains, dim\)"):
        ess_bulk(torch.zeros(10))


def test_a_nan_draw_makes_its_dimension_nan_and_leaves_the_others_alone():
    x = _normal(100, 4, seed=7, d=2)
    x[50, 1, 0] = math.nan
    for f in (rhat, ess_bulk, ess_tail):
        r = f(x)
        assert r[0].isnan() and r[1].isfinite(), (f.__name__, r.tolist())
