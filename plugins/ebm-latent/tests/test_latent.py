"""The latent-space EBM prior and ABP: inference against an analytic posterior, the prior's
learning direction, gradient counts, the anomaly task on a constructed case, and errors."""

import math

import pytest
import torch
from ebm_coop.generators import DecoderGenerator
from ebm_image import ImageData
from ebm_latent import AlternatingBackprop, GaussianPrior, LatentEBM
from ebm_latent.tasks import Anomaly, AnomalyConfig
from torch import nn

from ebmcore import Batch, BuildContext, EbmError, build
from ebmcore.kit.latent import latent_langevin
from ebmcore.train import run_recipe


class LinearDecoder(nn.Module):
    """g(z) = W z + b, reshaped to ``shape``: the posterior of a linear-Gaussian model is known."""

    def __init__(self, weight, bias, shape):
        super().__init__()
        self.weight, self.bias, self.shape = nn.Parameter(weight), nn.Parameter(bias), shape
        self.calls = 0

    def forward(self, z, cond=None):
        self.calls += 1
        return (z @ self.weight.T + self.bias).view(-1, *self.shape)


def _linear_model(sigma=0.5):
    w = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.2]])
    b = torch.tensor([0.2, -0.1, 0.0])
    return DecoderGenerator(LinearDecoder(w, b, (3,)), latent_dim=2, sigma=sigma), w, b


def test_posterior_langevin_recovers_the_linear_gaussian_posterior():
    # x = W z + b + N(0, σ²I), z ~ N(0, I): p(z | x) = N(C Wᵀ(x − b)/σ², C), C = (I + WᵀW/σ²)⁻¹
    sigma = 0.5
    gen, w, b = _linear_model(sigma)
    abp = AlternatingBackprop(GaussianPrior(2), gen, posterior_steps=400, posterior_step=0.1)
    x = torch.tensor([1.0, 0.5, -0.3])
    cov = torch.linalg.inv(torch.eye(2) + w.T @ w / sigma**2)
    mean = cov @ w.T @ (x - b) / sigma**2
    z = abp.infer(x.expand(4000, 3), rng=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mean, atol=0.03), (z.mean(0), mean)
    # ULA at s = δ²/2 = 0.005 is biased by O(s): 5 % on the std
    assert torch.allclose(z.std(0), cov.diagonal().sqrt(), rtol=0.05), (z.std(0), cov.diagonal().sqrt())


def test_prior_langevin_samples_a_known_gaussian():
    # the δ-form at δ = 0.1 (s = 0.005) samples N(m, s²I) from E = ‖z − m‖²/(2·0.25)
    m = torch.tensor([1.0, -2.0])
    z = latent_langevin(lambda z: (z - m).pow(2).sum(1) / 0.5, torch.zeros(4000, 2), 600, 0.1,
                        rng=torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), m, atol=0.05) and torch.allclose(z.std(0), torch.full((2,), 0.5), rtol=0.05)


def test_inference_costs_one_generator_pass_per_step_and_leaves_parameters_without_gradients():
    gen, _, _ = _linear_model()
    abp = AlternatingBackprop(GaussianPrior(2), gen, posterior_steps=7)
    abp.infer(torch.zeros(5, 3), rng=torch.Generator().manual_seed(0))
    assert gen.decoder.calls == 7
    assert all(p.grad is None for p in gen.parameters())


def test_the_prior_learned_against_a_known_aggregated_posterior_moves_towards_it():
    # feed the prior's maximum-likelihood step posterior samples from N(m, 0.5²I): its samples,
    # N(0, I) before learning, must move towards m and narrow
    torch.manual_seed(0)
    m = torch.tensor([1.5, -1.0])
    gen = DecoderGenerator(LinearDecoder(torch.zeros(3, 2), torch.zeros(3), (3,)), latent_dim=2, sigma=0.3)
    model = LatentEBM(build("energy", "latent_mlp", latent_dim=2, hidden=[32, 32]), gen, prior_steps=30)
    rng = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.prior.parameters(), lr=3e-3, betas=(0.5, 0.999))
    before = model.sample_prior(2000, rng=rng)
    for _ in range(150):
        z_pos = m + 0.5 * torch.randn(256, 2, generator=rng)
        loss, _ = model.prior_loss(z_pos, gen.latent(256, rng), rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.sample_prior(2000, rng=rng)
    assert (before.mean(0) - m).norm() > 1.5
    assert (after.mean(0) - m).norm() < 0.4, after.mean(0)
    assert after.std(0).max() < 0.8, after.std(0)


def test_loss_gives_each_group_its_loss_and_abp_has_no_prior_group():
    gen, _, _ = _linear_model()
    batch = Batch(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))
    prior = build("energy", "latent_mlp", latent_dim=2, hidden=[8])
    losses, metrics = LatentEBM(prior, gen, prior_steps=3, posterior_steps=2).loss(
        batch, rng=torch.Generator().manual_seed(0))
    assert set(losses) == {"energy", "generator"} and {"loss/cd", "energy/prior", "energy/posterior"} <= set(metrics)
    abp = AlternatingBackprop(GaussianPrior(2), gen, posterior_steps=2)
    losses, _ = abp.loss(batch, rng=torch.Generator().manual_seed(0))
    assert set(losses) == {"generator"} and set(abp.param_groups()) == {"generator"}
    assert abp.sample(6, rng=torch.Generator().manual_seed(0)).shape == (6, 3)


# -- anomaly --------------------------------------------------------------------------------

class ConstantDecoder(nn.Module):
    """g(z) = −1 everywhere (plus nothing of z): images near −1 reconstruct, others do not."""

    def forward(self, z, cond=None):
        return torch.full((len(z), 1, 4, 4), -1.0) + 0 * z.sum(1).view(-1, 1, 1, 1)


def _anomaly_data():
    g = torch.Generator().manual_seed(0)
    dark = -1 + 0.1 * torch.rand(40, 1, 4, 4, generator=g)     # label 0
    bright = 1 - 0.1 * torch.rand(40, 1, 4, 4, generator=g)    # label 1
    held = Batch(torch.cat([dark[20:], bright[20:]]), torch.tensor([0] * 20 + [1] * 20))
    return ImageData(dark[:20], torch.zeros(20, dtype=torch.long), num_classes=2, heldout=held,
                                  excluded_classes=(1,))


@pytest.mark.parametrize(("anomalous", "expected"), [(None, 1.0), ((0,), 0.0)])
def test_anomaly_auroc_on_a_constructed_case(tmp_path, anomalous, expected):
    # a model that reconstructs only dark images: the bright class is anomalous (AUROC 1);
    # calling the dark class anomalous instead turns the score upside down (AUROC 0)
    gen = DecoderGenerator(ConstantDecoder(), latent_dim=2, sigma=0.3)
    model = AlternatingBackprop(GaussianPrior(2), gen, posterior_steps=3)
    task = Anomaly(AnomalyConfig(n=50, anomalous=anomalous, batch=16), "cpu")
    m = task.run(model, _anomaly_data(), rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["auroc"] == expected and m["auroc/reconstruction"] == expected
    assert (m["mse/normal"] < m["mse/anomalous"]) == (expected == 1.0)
    assert (tmp_path / "anomaly.png").exists()


def test_anomaly_needs_a_latent_objective_and_anomalous_labels(tmp_path):
    task = Anomaly(AnomalyConfig(), "cpu")
    with pytest.raises(EbmError, match="needs a latent-variable objective"):
        task.run(nn.Module(), _anomaly_data(), rng=torch.Generator(), out=tmp_path)
    gen = DecoderGenerator(ConstantDecoder(), latent_dim=2, sigma=0.3)
    data = _anomaly_data()
    data.excluded_classes = ()
    with pytest.raises(EbmError, match="set `anomalous`"):
        task.run(AlternatingBackprop(GaussianPrior(2), gen), data, rng=torch.Generator(), out=tmp_path)
    with pytest.raises(EbmError, match="0 anomalous images"):
        Anomaly(AnomalyConfig(anomalous=(7,)), "cpu").run(AlternatingBackprop(GaussianPrior(2), gen), data,
                                                         rng=torch.Generator(), out=tmp_path)


# -- errors and recipes -----------------------------------------------------------------------

def test_mismatched_or_wrong_priors_are_refused_by_name():
    gen, _, _ = _linear_model()
    with pytest.raises(ValueError, match="set energy.latent_dim = generator.latent_dim"):
        LatentEBM(build("energy", "latent_mlp", latent_dim=3), gen)
    with pytest.raises(ValueError, match="use energy 'latent_mlp'"):
        LatentEBM(GaussianPrior(2), gen)
    with pytest.raises(ValueError, match="use energy 'latent_gaussian'"):
        AlternatingBackprop(build("energy", "latent_mlp", latent_dim=2), gen)
    with pytest.raises(ValueError, match=r"scores latents of shape \(batch, 2\), got \(4, 784\)"):
        build("energy", "latent_mlp", latent_dim=2)(torch.zeros(4, 784))
    with pytest.raises(ValueError, match="needs a trainable generator"):
        LatentEBM(build("energy", "latent_mlp", latent_dim=2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="needs a prior over latents as its \\[energy\\]"):
        LatentEBM(BuildContext(event_shape=(2,)).build("energy", "mlp"), gen)


TOY = {
    "run": {"seed": 0, "steps": 3, "log_every": 1, "checkpoint_every": 3, "eval_samples": 50},
    "data": {"type": "toy2d", "name": "eight_gaussians", "batch_size": 32, "n_train": 200, "n_test": 100},
    "energy": {"type": "latent_mlp", "latent_dim": 2, "hidden": [16, 16]},
    "generator": {"type": "mlp", "latent_dim": 2, "hidden": 16, "sigma": 0.1},
    "objective": {"type": "latent_ebm", "prior_steps": 5, "posterior_steps": 5},
    "optim": {"energy": {"lr": 1e-4}, "generator": {"lr": 1e-3}},
}


@pytest.mark.parametrize("objective", ["latent_ebm", "abp"])
def test_both_objectives_run_from_a_recipe_with_no_sampler(tmp_path, objective):
    # a 4-d latent: the end-of-run figure must not feed the prior the data's 2-d grid
    recipe = {**TOY, "objective": {"type": objective, "posterior_steps": 5},
              "energy": {**TOY["energy"], "latent_dim": 4}, "generator": {**TOY["generator"], "latent_dim": 4}}
    if objective == "abp":
        recipe = {**recipe, "energy": {"type": "latent_gaussian", "latent_dim": 4},
                  "optim": {"generator": {"lr": 1e-3}}}
    record = run_recipe(recipe, out=str(tmp_path / objective), progress=False)
    assert math.isfinite(record["mmd2"]) and math.isfinite(record["loss/generator"])
    assert ("loss/energy" in record) == (objective == "latent_ebm")
    from PIL import Image

    with Image.open(tmp_path / objective / "density.png") as im:  # data and samples only
        assert im.width < im.height * 2.5


def test_a_mismatched_latent_dim_in_a_recipe_names_both_keys(tmp_path):
    recipe = {**TOY, "energy": {"type": "latent_mlp", "latent_dim": 3}}
    with pytest.raises(EbmError, match="energy.latent_dim = generator.latent_dim"):
        run_recipe(recipe, out=str(tmp_path / "run"), progress=False)
