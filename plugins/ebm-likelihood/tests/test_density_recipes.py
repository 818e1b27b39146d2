"""The density recipes at full length (benchmarks: ``pytest -m slow``; about 25 and 30 minutes
on one idle core): what docs/results.md, "Likelihood", reports."""

from pathlib import Path

import pytest

from ebmcore.train import run_recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.mark.slow
def test_toy2d_density_scores_above_2_5_nats_by_ais_and_by_quadrature(tmp_path, one_thread):
    r = run_recipe(RECIPES / "toy2d-density.toml", out=str(tmp_path / "run"), progress=False)
    assert r["loglik/nats/quadrature"] >= 2.5 and r["loglik/nats/ais"] >= 2.5
    assert abs(r["loglik/log_z/ais"] - r["loglik/log_z/quadrature"]) <= 0.05
    assert r["loglik/nats/raise"] <= r["loglik/nats/quadrature"] + 0.02  # conservative
    assert r["loglik/nats/ais"] > r["loglik/nats/gaussian"] + 5


@pytest.mark.slow
def test_digits_density_beats_the_fitted_gaussian(tmp_path, one_thread):
    r = run_recipe(RECIPES / "digits-density.toml", out=str(tmp_path / "run"), progress=False)
    gaussian = r["loglik/bits_per_dim/gaussian"]
    assert r["loglik/bits_per_dim/ais"] < gaussian - 0.3 and r["loglik/bits_per_dim/raise"] < gaussian - 0.3
