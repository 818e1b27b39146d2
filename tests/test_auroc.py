"""ebmcore.kit.diagnostics.auroc: rank-based, ties count one half."""

import pytest
import torch

from ebmcore.kit.diagnostics import auroc


def test_hand_computed_case_with_a_tie():
    # out 2 beats in 1, ties in 2 (½), loses to 3: 1.5; out 4 beats all three: 3 → 4.5 / 6
    assert auroc(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0])) == pytest.approx(0.75)


def test_separated_reversed_and_identical_scores():
    low, high = torch.arange(10.0), torch.arange(10.0) + 100
    assert auroc(low, high) == 1.0
    assert auroc(high, low) == 0.0
    assert auroc(torch.ones(7), torch.ones(5)) == 0.5


def test_random_scores_give_about_one_half():
    rng = torch.Generator().manual_seed(0)
    value = auroc(torch.randn(4000, generator=rng), torch.randn(4000, generator=rng))
    assert abs(value - 0.5) < 0.02  # sd of the estimate ≈ 0.0065


def test_agrees_with_counting_every_pair_on_heavily_tied_scores():
    rng = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (37,), generator=rng).float()
    b = torch.randint(1, 7, (23,), generator=rng).float()
    pairs = (b[None, :] > a[:, None]).double() + 0.5 * (b[None, :] == a[:, None]).double()
    assert auroc(a, b) == pytest.approx(pairs.mean().item(), abs=1e-12)


def test_empty_or_nan_scores_are_refused():
    with pytest.raises(ValueError, match="both sides"):
        auroc(torch.tensor([]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([float("nan")]), torch.tensor([1.0]))
    assert auroc(torch.tensor([0.0]), torch.tensor([float("inf")])) == 1.0
