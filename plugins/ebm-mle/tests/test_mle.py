import pytest
import torch
from ebm_langevin import Langevin
from ebm_mle import DataInit, GaussianNoise, MaximumLikelihood, ReplayBuffer, UniformNoise
from torch import nn

from ebmcore import Batch, EbmError, Energy, PluginHost
from ebmcore.build import BuildContext


def test_uniform_and_gaussian_noise_have_their_range_and_scale():
    rng = torch.Generator().manual_seed(0)
    u = UniformNoise((3,), low=-2.0, high=4.0).sample(20000, rng=rng)
    assert u.shape == (20000, 3) and u.min() >= -2 and u.max() <= 4
    assert u.mean().item() == pytest.approx(1.0, abs=0.05)
    g = GaussianNoise((2,), mean=1.0, std=0.5).sample(20000, rng=rng)
    assert g.mean().item() == pytest.approx(1.0, abs=0.02) and g.std().item() == pytest.approx(0.5, abs=0.02)


def test_replay_buffer_starts_from_noise_then_replays_written_chain_ends():
    rng = torch.Generator().manual_seed(0)
    buf = ReplayBuffer((2,), size=100, reinit=0.0, noise=UniformNoise((2,)))
    first = buf.sample(10, rng=rng)
    assert first.abs().max() <= 1  # empty buffer: all fresh noise
    buf.update(torch.full((10, 2), 7.0))
    assert torch.equal(buf.sample(50, rng=rng), torch.full((50, 2), 7.0))
    assert int(buf.count) == 10


def test_replay_buffer_without_replacement_keeps_a_fixed_set_of_persistent_chains():
    """size = batch, reinit 0, no replacement: every chain is continued exactly once per
    step, so after many steps all 100 chains are still distinct (drawn with replacement,
    the set drifts to copies of a few: PCD would lose its chains)."""
    rng = torch.Generator().manual_seed(0)
    kept = {}
    for replacement in (False, True):
        buf = ReplayBuffer((1,), size=100, reinit=0.0, replacement=replacement)
        buf.update(torch.arange(100.0).view(100, 1))
        for _ in range(200):
            buf.update(buf.sample(100, rng=rng))  # each chain "steps" to itself
        kept[replacement] = len(torch.unique(buf.x))
    assert kept[False] == 100
    assert kept[True] < 10  # genetic drift: measured 2 of 100 left


def test_replay_buffer_drawn_whole_without_replacement_returns_its_chains_in_their_order():
    """Each row returns to the row it was drawn into, even after the ring wrapped, so a
    ladder of tempered replicas stored replica-major keeps each chain at its temperature."""
    buf = ReplayBuffer((1,), size=6, reinit=0.0, replacement=False)
    buf.update(torch.arange(4.0).view(4, 1))
    buf.update(torch.arange(4.0, 10.0).view(6, 1))  # wraps: ptr is 4
    rng = torch.Generator().manual_seed(0)
    first = buf.sample(6, rng=rng)
    assert first.view(-1).tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    buf.update(first + 100)
    assert (buf.sample(6, rng=rng) - first).view(-1).tolist() == [100.0] * 6


def test_replay_buffer_reinitialises_the_stated_fraction():
    rng = torch.Generator().manual_seed(0)
    buf = ReplayBuffer((2,), size=1000, reinit=0.25, noise=UniformNoise((2,)))
    buf.update(torch.full((1000, 2), 7.0))
    x = buf.sample(8000, rng=rng)
    fresh = (x[:, 0] != 7.0).float().mean().item()
    assert fresh == pytest.approx(0.25, abs=0.02)


def test_replay_buffer_is_a_bounded_ring_and_its_state_is_in_the_state_dict():
    buf = ReplayBuffer((1,), size=4, reinit=0.0)
    buf.update(torch.arange(6.0).view(6, 1))
    assert sorted(buf.x.view(-1).tolist()) == [2.0, 3.0, 4.0, 5.0]
    assert int(buf.count) == 4
    assert set(buf.state_dict()) >= {"x", "count", "ptr"}


def test_contrastive_divergence_starts_at_the_data_batch():
    data = torch.randn(5, 2)
    x = DataInit((2,)).sample(5, rng=torch.Generator(), data=data)
    assert torch.equal(x, data) and x is not data


class _Quadratic(Energy):
    """E(x) = ½‖x − μ‖², μ learned: MLE must move μ to the data mean (chains long enough
    to mix; short ones would bias μ, the short-run effect of Nijkamp et al.)."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(2))

    def forward(self, x, cond=None):
        return 0.5 * (x - self.mu).pow(2).sum(1)


def test_mle_learns_the_mean_of_a_gaussian():
    torch.manual_seed(0)
    energy = _Quadratic()
    obj = MaximumLikelihood(energy, Langevin(step_size=0.05, n_steps=150), GaussianNoise((2,)))
    opt = torch.optim.Adam(obj.param_groups()["energy"].parameters(), lr=0.05)
    rng = torch.Generator().manual_seed(0)
    target = torch.tensor([1.5, -0.5])
    for _ in range(150):
        batch = Batch(target + torch.randn(256, 2, generator=rng))
        losses, metrics = obj.loss(batch, rng=rng)
        opt.zero_grad()
        losses["energy"].backward()
        opt.step()
    assert torch.allclose(energy.mu.detach(), target, atol=0.15), energy.mu
    assert set(metrics) == {"loss/cd", "energy/data", "energy/sample"}


def test_mle_writes_chain_ends_back_to_the_replay_buffer():
    energy = _Quadratic()
    buf = ReplayBuffer((2,), size=64, reinit=0.0)
    obj = MaximumLikelihood(energy, Langevin(step_size=0.05, n_steps=3), buf, alpha=0.1)
    obj.loss(Batch(torch.randn(16, 2)), rng=torch.Generator())
    assert int(buf.count) == 16
    assert energy.mu.grad is None  # sampling left no parameter gradients behind


class _Replicated(Langevin):
    """Two rows per target chain, the second recognisable: what a tempering ladder returns."""

    @property
    def replicas(self):
        return 2

    def run(self, x0, energy, n_steps=None, **kw):
        half = len(x0) // 2
        return torch.cat([x0[:half], torch.full_like(x0[half:], 50.0)])


def test_mle_keeps_every_replica_in_the_generator_and_scores_only_the_target_chains():
    buf = ReplayBuffer((2,), size=8, reinit=0.0, replacement=False)
    obj = MaximumLikelihood(_Quadratic(), _Replicated(n_steps=1), buf)
    _, metrics = obj.loss(Batch(torch.zeros(4, 2)), rng=torch.Generator().manual_seed(0))
    assert int(buf.count) == 8 and bool((buf.x[4:] == 50.0).all())  # the replicas were stored
    assert float(metrics["energy/sample"]) < 10  # the target rows (noise in [−1, 1]), not the 50s
    assert obj.sample(3, rng=torch.Generator()).shape == (3, 2)


def test_data_noise_perturbs_the_positive_batch_by_its_std():
    energy = _Quadratic()  # E = ½‖x‖² at μ = 0: E of N(0, σ²I) data averages σ² in 2-D
    obj = MaximumLikelihood(energy, Langevin(step_size=0.05, n_steps=1), GaussianNoise((2,)), data_noise=0.5)
    _, metrics = obj.loss(Batch(torch.zeros(20000, 2)), rng=torch.Generator().manual_seed(0))
    assert metrics["energy/data"].item() == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize("eval_chains", ["fresh", "persistent"])
def test_evaluation_chains_continue_the_buffer_only_when_asked_and_never_write_it(eval_chains):
    buf = ReplayBuffer((2,), size=64, reinit=0.0, noise=UniformNoise((2,), low=-1, high=1))
    buf.update(torch.full((64, 2), 50.0))  # stored chains far outside the noise range
    obj = MaximumLikelihood(_Quadratic(), Langevin(step_size=1e-6, n_steps=1, noise=0.0), buf,
                            eval_chains=eval_chains)
    before = buf.x.clone()
    x = obj.sample(32, rng=torch.Generator().manual_seed(0))
    assert (x.abs() > 10).all() if eval_chains == "persistent" else (x.abs() <= 1).all()
    assert torch.equal(buf.x, before) and int(buf.ptr) == 0


class _Labelled:
    """Just what generator 'fitted_gaussian' reads from the data: the training set."""

    def __init__(self, x, y):
        self.batch = Batch(x, y)

    def dataset(self):
        return self.batch


def _two_classes(n=20000):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, 2, generator=g) @ torch.tensor([[1.0, 0.0], [0.8, 0.6]]) + torch.tensor([4.0, 0.0])
    b = torch.randn(n, 2, generator=g) * 0.5 - torch.tensor([4.0, 0.0])
    return torch.cat([a, b]), torch.cat([torch.zeros(n), torch.ones(n)]).long()


def test_fitted_gaussian_draws_have_the_datas_mean_and_covariance():
    x, y = _two_classes()
    ctx = BuildContext(event_shape=(2,), num_classes=2, built={"data": _Labelled(x, y)})
    gen = ctx.build("generator", "fitted_gaussian")
    draws = gen.sample(40000, rng=torch.Generator().manual_seed(1))
    assert torch.allclose(draws.mean(0), x.mean(0), atol=0.05)
    assert torch.allclose(draws.T.cov(), x.T.cov(), rtol=0.03, atol=0.03)


def test_fitted_gaussian_per_class_mixes_the_classes_and_starts_labelled_chains_in_their_class():
    x, y = _two_classes()
    ctx = BuildContext(event_shape=(2,), num_classes=2, built={"data": _Labelled(x, y)})
    gen = ctx.build("generator", "fitted_gaussian", per_class=True)
    rng = torch.Generator().manual_seed(1)
    mixed = gen.sample(20000, rng=rng)
    assert (mixed[:, 0] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)  # class frequencies
    ones = gen.fresh(20000, rng=rng, cond=torch.ones(20000))
    assert torch.allclose(ones.mean(0), torch.tensor([-4.0, 0.0]), atol=0.02)
    assert torch.allclose(ones.T.cov(), torch.eye(2) * 0.25, atol=0.01)
    zeros = gen.sample(20000, rng=rng, cond=torch.zeros(20000))
    assert torch.allclose(zeros.T.cov(), x[y == 0].T.cov(), atol=0.05)
    # a buffer restarting from it passes the labels on
    buf = ctx.build("generator", "replay_buffer", size=10, reinit=1.0, fresh="fitted_per_class")
    buf.update(torch.zeros(10, 2))
    assert (buf.sample(500, rng=rng, cond=torch.ones(500))[:, 0] < -2).all()


def test_fitted_gaussian_per_class_needs_labels():
    x, _ = _two_classes(100)
    ctx = BuildContext(event_shape=(2,), num_classes=None, built={"data": _Labelled(x, None)})
    with pytest.raises(EbmError, match="per_class = true needs labelled data"):
        ctx.build("generator", "fitted_gaussian", per_class=True)


def test_fitted_gaussian_per_class_with_fewer_examples_than_dimensions_keeps_each_class_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(3, 6, generator=g), torch.randn(5, 6, generator=g) + 10])  # ranks 2 and 4
    y = torch.tensor([0] * 3 + [1] * 5)
    ctx = BuildContext(event_shape=(6,), num_classes=2, built={"data": _Labelled(x, y)})
    gen = ctx.build("generator", "fitted_gaussian", per_class=True)
    draws = gen.sample(4000, rng=g, cond=torch.zeros(4000))
    # a rank-2 Gaussian through the class's 3 points: every draw lies in their affine plane
    basis = torch.linalg.svd(x[:3] - x[:3].mean(0), full_matrices=False).Vh[:2]
    centred = draws - x[:3].mean(0)
    assert torch.allclose(centred - centred @ basis.T @ basis, torch.zeros_like(centred), atol=1e-4)


class _Scored:
    """Data that scores samples by their mean and records the pictures asked of it."""

    def __init__(self):
        self.pictures, self.scores = [], []

    def evaluate(self, x):
        self.scores.append(x.mean().item())
        return {"mean": self.scores[-1]}

    def save_samples(self, x, path):
        self.pictures.append((path, len(x)))


def test_generator_chains_continue_the_buffer_never_write_it_and_average_their_draws(tmp_path):
    from ebm_mle import GeneratorChains
    from ebm_mle.tasks import GeneratorChainsConfig

    buf = ReplayBuffer((2,), size=64, reinit=0.0, noise=UniformNoise((2,), low=-1, high=1))
    buf.update(torch.cat([torch.full((32, 2), 40.0), torch.full((32, 2), 60.0)]))
    before = buf.x.clone()
    task = GeneratorChains(GeneratorChainsConfig(n=8, n_steps=1, draws=20), _Quadratic(),
                           Langevin(step_size=1e-6, n_steps=50, noise=0.0), buf)
    data = _Scored()
    metrics = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    # 8 of the 64 chains a draw (one draw's mean is 40 … 60): the metric is the draws' mean
    assert len(data.scores) == 20 and len(set(data.scores)) > 1
    assert metrics == {"mean": pytest.approx(sum(data.scores) / 20)}
    assert metrics["mean"] == pytest.approx(50.0, abs=2.5)
    assert data.pictures == [(tmp_path / "samples.png", 8)]  # the first draw's
    assert torch.equal(buf.x, before) and int(buf.ptr) == 0


def test_generator_chains_refuse_a_conditional_generator_naming_the_task():
    from ebm_mle.tasks import GeneratorChains, GeneratorChainsConfig

    from ebmcore import Condition

    class Labelled(UniformNoise):
        condition = Condition.LABEL

    ctx = BuildContext()
    ctx.built.update(energy=_Quadratic(), sampler=Langevin(step_size=0.1, n_steps=1), generator=Labelled((2,)))
    with pytest.raises(EbmError, match="task 'generator_chains' scores unconditional samples.*label"):
        GeneratorChains.from_config(GeneratorChainsConfig(), ctx)


def masked_objective(sampler=("langevin", {"n_steps": 3, "step_size": 0.01}), **settings):
    host = PluginHost(["ebm_mle", "ebm_toy", "ebm_langevin", "ebm_tempering"], autoload=False)
    ctx = BuildContext(registry=host.registry)
    data = ctx.built["data"] = ctx.build("data", "toy2d", n_train=64, n_test=16)
    ctx.event_shape = data.event_shape
    ctx.built["energy"] = ctx.build("energy", "mlp", hidden=[8])
    ctx.built["sampler"] = ctx.build("sampler", sampler[0], **sampler[1])
    return ctx.build("objective", "masked_mle", **settings), data


def test_masked_mle_samples_only_the_hidden_entries_from_noise():
    objective, data = masked_objective(low=5.0, high=6.0, share=0.5)
    rng = torch.Generator().manual_seed(0)
    x = data.dataset().x[:32]
    missing = objective.hide(x, rng=rng)
    assert 0.3 < missing.float().mean() < 0.7
    y = objective.complete(x, missing, rng=rng, n_steps=1)
    assert torch.equal(y[~missing], x[~missing])  # observed entries held bit for bit
    assert bool((y[missing] > 4).all())  # hidden ones start on [5, 6], far from the data's [−3, 3]
    losses, metrics = objective.loss(Batch(x), rng=rng)
    losses["energy"].backward()
    assert torch.isfinite(losses["energy"]) and set(metrics) >= {"energy/data", "energy/sample"}
    # the run's "samples" are completions of held-out examples: about half their entries kept
    kept = (objective.sample(16, rng=rng) == data.heldout().x).float().mean()
    assert 0.3 < kept < 0.7


def test_masked_mle_refuses_an_empty_start_range():
    with pytest.raises(EbmError, match=r"\$\.objective.*must be < high \(1.0\), got 1.0"):
        masked_objective(low=1.0, high=1.0)


def test_masked_mle_refuses_a_sampler_that_returns_replicas():
    with pytest.raises(EbmError, match="masked_mle' takes every row"):
        masked_objective(sampler=("parallel_tempering", {"n_temperatures": 2, "return_all": True}))


def test_masked_mle_refuses_label_conditional_data():
    ctx = BuildContext(registry=PluginHost(["ebm_mle", "ebm_image", "ebm_langevin"], autoload=False).registry)
    data = ctx.built["data"] = ctx.build("data", "digits", conditional=True)
    ctx.event_shape = data.event_shape
    ctx.built["energy"] = ctx.build("energy", "swish_cnn", hidden=8)
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=1)
    with pytest.raises(EbmError, match="masked_mle' completes unconditional data"):
        ctx.build("objective", "masked_mle")
