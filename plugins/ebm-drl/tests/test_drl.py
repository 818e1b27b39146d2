import pytest
import torch
from ebm_drl import DiffusionRecoveryLikelihood, LevelCNN, LevelMLP, Levels
from ebm_langevin import Langevin
from torch import nn

from ebmcore import Batch, Condition, DivergenceError, EbmError, Energy, RecipeError
from ebmcore.train import run_recipe


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_levels_get_noisier_and_stay_variance_preserving(kind):
    lv = Levels(6, kind)
    assert torch.all(lv.sigma_cum[1:] > lv.sigma_cum[:-1])
    assert torch.allclose(lv.a_cum**2 + lv.sigma_cum**2, torch.ones(6, dtype=torch.float64))
    assert torch.all(lv.step2[1:] > lv.step2[:-1])  # noisier levels take larger steps
    assert lv.a_next[-1] == 0 and lv.sigma_next[-1] == 1 and lv.recovery[-1] == 0 and lv.scale[-1] == 1


def test_step_schedules_differ_by_the_growth_factor():
    paper, sigma = Levels(4, step_schedule="paper"), Levels(4, step_schedule="sigma")
    assert torch.allclose(paper.step2 / sigma.step2, paper.sigma_cum / paper.sigma_cum[0])
    assert torch.allclose(sigma.step2, 2e-4 * sigma.sigma_next**2)


def test_diffusing_level_by_level_gives_the_marginal_the_formula_states():
    """x_{t+1} = a_{t+1}·x_t + σ_{t+1}·ε from x_0 = ā_0·x + σ̄_0·ε: mean ā_t·x, variance σ̄_t²."""
    lv = Levels(5)
    rng = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 1.5, dtype=torch.float64)
    xt = lv.a_cum[0] * x + lv.sigma_cum[0] * torch.randn(x.shape, generator=rng, dtype=torch.float64)
    for t in range(5):
        assert xt.mean().item() == pytest.approx(lv.a_cum[t].item() * 1.5, abs=0.01)
        assert xt.var().item() == pytest.approx(lv.sigma_cum[t].item() ** 2, rel=0.02, abs=1e-5)
        xt = lv.a_next[t] * xt + lv.sigma_next[t] * torch.randn(x.shape, generator=rng, dtype=torch.float64)
    assert xt.mean().abs().item() < 0.01 and xt.var().item() == pytest.approx(1.0, rel=0.02)  # x_T: pure noise


def test_objective_pairs_follow_the_schedule():
    lv = Levels(4)
    objective = _objective(_Quadratic(torch.zeros(2), 1.0), lv)
    rng = torch.Generator().manual_seed(1)
    x = torch.tensor([[1.0, -2.0]]).expand(100_000, 2)
    t = torch.full((len(x),), 1)
    x_t, x_next = objective.diffuse(x, t, rng=rng)
    assert torch.allclose(x_t.mean(0), lv.a_cum[1].float() * x[0], atol=0.01)
    assert x_t.var(0).mean().item() == pytest.approx(lv.sigma_cum[1].item() ** 2, rel=0.03)
    assert x_next.var(0).mean().item() == pytest.approx(lv.sigma_cum[2].item() ** 2, rel=0.03)


class _Quadratic(Energy):
    """f(y, t) = s_t²·‖y − μ‖²/(2τ²): the level's energy f/s_t² is a Gaussian N(μ, τ²)."""

    condition = Condition.LEVEL

    def __init__(self, mu, tau, step2=None):
        super().__init__()
        self.mu, self.tau, self.step2 = mu, tau, step2
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, y, cond=None):
        return self.w * self.step2[cond] * (y - self.mu).pow(2).sum(1) / (2 * self.tau**2)


def _objective(energy, levels, sampler=None, clamp=None):
    energy.step2 = levels.step2.float()
    return DiffusionRecoveryLikelihood(energy, sampler or Langevin(step_size=0.5, n_steps=30), (2,), levels, clamp=clamp)


def test_a_level_chain_samples_the_known_gaussian_conditional():
    """Energy N(μ, τ²) times the recovery term N(x̃, σ²): the conditional is Gaussian with
    precision 1/τ² + 1/σ² and mean (μ/τ² + x̃/σ²)/precision."""
    lv = Levels(3, b2=0.5)  # steps large enough for the chain to reach equilibrium in 300 steps
    mu, tau = torch.tensor([1.0, -1.0]), 0.5
    objective = _objective(_Quadratic(mu, tau), lv, Langevin(step_size=0.05, n_steps=300))
    t, sigma2 = 0, lv.sigma_next[0].item() ** 2
    x_tilde = torch.tensor([[-0.5, 0.5]]).expand(4000, 2)
    y = objective.recover(x_tilde, torch.full((4000,), t), rng=torch.Generator().manual_seed(0))
    precision = 1 / tau**2 + 1 / sigma2
    mean = (mu / tau**2 + x_tilde[0] / sigma2) / precision
    # ULA's stationary variance at step h on precision P (in whitened units) is 1/(P(1 − hP/2))
    p_white = lv.step2[t].item() * precision
    var = 1 / precision / (1 - 0.05 * p_white / 2)
    assert torch.allclose(y.mean(0), mean, atol=0.03)
    assert y.var(0).mean().item() == pytest.approx(var, rel=0.08)


def test_the_top_level_ignores_the_noise_it_starts_from():
    """Level T−1 samples the marginal: no pull back to its (pure-noise) start."""
    lv = Levels(3, b2=0.09, step_schedule="sigma")  # s² = b²·σ_T² = τ²: whitened precision 1
    mu, tau = torch.tensor([2.0, 0.0]), 0.3
    objective = _objective(_Quadratic(mu, tau), lv, Langevin(step_size=0.05, n_steps=400))
    start = torch.randn(3000, 2, generator=torch.Generator().manual_seed(2))
    y = objective.recover(start, torch.full((3000,), 2), rng=torch.Generator().manual_seed(3))
    assert torch.allclose(y.mean(0), mu, atol=0.03)


def test_chains_cost_k_gradients_per_level_and_sampling_t_times_k():
    calls = []

    class Counting(LevelMLP):
        def forward(self, x, cond=None):
            calls.append(len(x))
            return super().forward(x, cond)

    objective = DiffusionRecoveryLikelihood(Counting(2, (8,)), Langevin(step_size=0.5, n_steps=7), (2,), Levels(4))
    objective.sample(5, rng=torch.Generator().manual_seed(0))
    assert len(calls) == 4 * 7
    calls.clear()
    objective.loss(Batch(torch.randn(6, 2)), rng=torch.Generator().manual_seed(0))
    assert len(calls) == 7 + 1  # one chain for the batch of mixed levels, then E on positives and negatives


def test_drl_learns_the_mean_of_a_gaussian():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -0.5])
    data = mu + 0.3 * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    objective = DiffusionRecoveryLikelihood(LevelMLP(2, (32, 32), 16), Langevin(step_size=0.5, n_steps=15), (2,), Levels(4))
    opt = torch.optim.Adam(objective.energy.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(1)
    before = objective.sample(1000, rng=torch.Generator().manual_seed(2)).mean(0)
    for _ in range(300):
        batch = Batch(data[torch.randint(0, len(data), (128,), generator=rng)])
        losses, _ = objective.loss(batch, rng=rng)
        opt.zero_grad()
        losses["energy"].backward()
        opt.step()
    after = objective.sample(1000, rng=torch.Generator().manual_seed(2)).mean(0)
    assert (before - mu).norm() > 0.5  # untrained: far away
    assert (after - mu).norm() < 0.15


def test_clamps_keep_a_blown_up_chain_finite_and_the_guard_sees_unguarded_ones():
    class Exploding(LevelMLP):
        def forward(self, x, cond=None):
            return -1e30 * x.pow(2).sum(1)  # ∇ pushes chains to infinity within a few steps

    def objective(**guards):
        sampler = Langevin(step_size=0.5, n_steps=20, grad_clamp=guards.get("grad_clamp"))
        return DiffusionRecoveryLikelihood(Exploding(2, (4,)), sampler, (2,), Levels(3), clamp=guards.get("clamp"))

    x = objective(grad_clamp=100.0, clamp=(-4.0, 4.0)).sample(64, rng=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all() and x.abs().max() <= 4.0
    with pytest.warns(RuntimeWarning, match="8 of 8 chains .* non-finite"):  # outside a run, the chains say so
        _, metrics = objective().loss(Batch(torch.randn(8, 2)), rng=torch.Generator().manual_seed(0))
    assert not torch.isfinite(metrics["energy/sample"])  # a divergence the runner's guard stops on


TINY_DRL = {
    "run": {"seed": 0, "steps": 6, "log_every": 1, "checkpoint_every": 3, "eval_samples": 32},
    "data": {"type": "toy2d", "name": "eight_gaussians", "batch_size": 64, "n_train": 2000, "n_test": 500},
    "energy": {"type": "level_mlp", "hidden": [32, 32], "embedding": 8},
    "sampler": {"type": "langevin", "n_steps": 5, "step_size": 0.5},
    "objective": {"type": "drl", "levels": 4, "clamp": [-4.0, 4.0]},
    "optim": {"energy": {"type": "adam", "lr": 1e-3}},
}


def test_a_recipe_runs_and_the_guard_stops_on_its_energies(tmp_path):
    record = run_recipe(TINY_DRL, out=str(tmp_path / "ok"), progress=False)
    assert {"energy/data", "energy/sample", "recovery/moved", "mmd2"} <= set(record)
    bad = {**TINY_DRL, "run": {**TINY_DRL["run"], "max_abs_energy": 1e-9}}
    with pytest.raises(DivergenceError, match="energy/data"):
        run_recipe(bad, out=str(tmp_path / "bad"), progress=False)


@pytest.mark.parametrize("key,value,message", [
    ("levels", 1, "levels"),
    ("schedule", "cosin", "did you mean 'cosine'"),
    ("beta_end", 1e-5, "beta_start"),
    ("step_b2", 0.0, "step_b2"),
    ("clamp", [1.0, -1.0], "low < high"),
])
def test_bad_config_is_named(tmp_path, key, value, message):
    recipe = {**TINY_DRL, "objective": {**TINY_DRL["objective"], key: value}}
    with pytest.raises(RecipeError, match=message):
        run_recipe(recipe, out=str(tmp_path / "x"), progress=False)


def test_components_that_do_not_fit_are_refused(tmp_path):
    blind = {**TINY_DRL, "energy": {"type": "mlp", "hidden": [8]}}
    with pytest.raises(EbmError, match="conditioned on the noise level"):
        run_recipe(blind, out=str(tmp_path / "a"), progress=False)
    clamped = {**TINY_DRL, "sampler": {**TINY_DRL["sampler"], "clamp": [-1.0, 1.0]}}
    with pytest.raises(EbmError, match=r"objective.clamp"):
        run_recipe(clamped, out=str(tmp_path / "b"), progress=False)


def test_energies_take_the_level_and_default_to_level_zero():
    torch.manual_seed(0)
    for energy, x in [(LevelMLP(2, (16,)), torch.randn(5, 2)), (LevelCNN((1, 8, 8), (4, 8)), torch.randn(5, 1, 8, 8))]:
        zero, three = torch.zeros(5, dtype=torch.long), torch.full((5,), 3)
        assert energy(x).shape == (5,)
        assert torch.equal(energy(x), energy(x, zero))
        assert not torch.allclose(energy(x, zero), energy(x, three))
    assert _ctx((1, 8, 8)).build("energy", "level_cnn", channels=[4]).condition is Condition.LEVEL
    with pytest.raises(ValueError, match="images"):
        _ctx((2,)).build("energy", "level_cnn")


def _ctx(shape):
    from ebmcore import BuildContext

    return BuildContext(event_shape=shape)


@pytest.mark.parametrize("data_noise", [0.0, 0.5])
def test_data_noise_smooths_the_data_that_are_diffused(data_noise, tmp_path):
    """The positives are diffused from x + data_noise·ε: the model learns the smoothed data."""
    objective = DiffusionRecoveryLikelihood(LevelMLP(2, (8,)), Langevin(step_size=0.5, n_steps=2), (2,), Levels(3),
                                            data_noise=data_noise)
    seen = []
    diffuse = objective.diffuse
    objective.diffuse = lambda x, t, rng: seen.append(x) or diffuse(x, t, rng=rng)
    x = torch.full((20_000, 2), 1.0)
    objective.loss(Batch(x), rng=torch.Generator().manual_seed(0))
    assert seen[0].mean().item() == pytest.approx(1.0, abs=0.01)
    assert seen[0].std().item() == pytest.approx(data_noise, abs=0.01)
    recipe = {**TINY_DRL, "objective": {**TINY_DRL["objective"], "data_noise": -0.1}}
    with pytest.raises(RecipeError, match="data_noise"):
        run_recipe(recipe, out=str(tmp_path / "x"), progress=False)


def test_fourier_features_are_fixed_checkpointed_and_scaled():
    torch.manual_seed(0)
    energy = _ctx((2,)).build("energy", "level_mlp", hidden=[16], fourier=500, fourier_scale=0.25)
    assert energy.layers[0].in_features == 2 + 2 * 500
    assert "freqs" in energy.state_dict()  # a resumed run computes the same features
    assert (energy.freqs / (2 * torch.pi)).std().item() == pytest.approx(0.25, rel=0.05)
    frozen = {name for name, _ in energy.named_parameters()}
    assert "freqs" not in frozen  # not learned
    x = torch.randn(5, 2)
    again = LevelMLP(2, (16,), fourier=500, fourier_scale=0.25)
    again.load_state_dict(energy.state_dict())
    assert torch.equal(again(x), energy(x))
    assert _ctx((2,)).build("energy", "level_mlp", hidden=[16]).layers[0].in_features == 2


def test_resume_is_exact_with_fourier_features_and_data_noise(tmp_path):
    import json

    recipe = {**TINY_DRL, "energy": {**TINY_DRL["energy"], "fourier": 4, "fourier_scale": 0.25},
              "objective": {**TINY_DRL["objective"], "data_noise": 0.1}}
    run_recipe(recipe, out=str(tmp_path / "full"), progress=False)
    half = {**recipe, "run": {**recipe["run"], "steps": 3}}
    run_recipe(half, out=str(tmp_path / "resumed"), progress=False)
    run_recipe(recipe, out=str(tmp_path / "resumed"), resume=True, progress=False)

    def losses(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss/energy"] for x in lines if "loss/energy" in json.loads(x)]

    assert losses("resumed") == losses("full") and len(losses("full")) == 6
