import pytest
import torch
from ebm_coop import Cooperative, CooperativeVAE
from ebm_coop.generators import DecoderGenerator
from ebm_coop.networks import (
    ConvEncoder,
    DeconvDecoder,
    MLPDecoder,
    MLPEncoder,
    UNetDecoder,
)
from ebm_coop.tasks import side_by_side
from ebm_langevin import Langevin
from torch import nn

from ebmcore import Batch, BuildContext, Condition, EbmError, Energy
from ebmcore.kit.masks import completion_condition, hole_mask, missing_from_condition


class GaussianEnergy(Energy):
    """E(x) = ‖(x − m)/s‖²/2 with learnable m and log s: the answer is known."""


    def __init__(self, dim=2):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(dim))
        self.log_s = nn.Parameter(torch.zeros(dim))

    def forward(self, x, cond=None):
        return ((x - self.m) / self.log_s.exp()).pow(2).sum(1) / 2


def _generator(encoder=False, latent=2):
    enc = MLPEncoder(latent, (2,), 32, 2) if encoder else None
    return DecoderGenerator(MLPDecoder(latent, (2,), 32, 2), latent, sigma=0.3, encoder=enc)


def _train(objective, data, steps, lr=1e-2, seed=0):
    """The runner's step by hand: each group's loss updates that group only."""
    rng = torch.Generator().manual_seed(seed)
    opts = {g: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
            for g, m in objective.param_groups().items()}
    for _ in range(steps):
        batch = Batch(data[torch.randint(0, len(data), (256,), generator=rng)])
        losses, metrics = objective.loss(batch, rng=rng)
        for i, (g, loss) in enumerate(losses.items()):
            params = list(objective.param_groups()[g].parameters())
            opts[g].zero_grad()
            torch.autograd.backward(loss, inputs=params, retain_graph=i < len(losses) - 1)
            opts[g].step()
    return metrics


MEAN, STD = torch.tensor([1.5, -1.0]), torch.tensor([0.4, 0.25])


def _data(n=4000):
    return MEAN + STD * torch.randn(n, 2, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["coop", "coop_vae"])
def test_cooperative_learning_recovers_a_gaussian_and_the_generator_follows(kind):
    # exact ULA revisions; the generator learns the revisions' spread through inferred
    # latents (coop: 10 Langevin steps on p(z | x̃); coop_vae: the encoder, σ = 0.1).
    # Without inference the generator regresses on the revisions' mean drift only and
    # collapses to the mode (measured: std 0.005), see docs/results.md.
    torch.manual_seed(0)
    energy = GaussianEnergy()
    sampler = Langevin(step_size=0.01, n_steps=15)
    if kind == "coop":
        objective = Cooperative(energy, sampler, _generator(), infer_steps=10)
    else:
        gen = _generator(encoder=True)
        gen.sigma = 0.1
        objective = CooperativeVAE(energy, sampler, gen)
    metrics = _train(objective, _data(), 600)
    # maximum likelihood with revised samples finds the energy's true parameters
    assert torch.allclose(energy.m.detach(), MEAN, atol=0.1), energy.m
    assert torch.allclose(energy.log_s.exp().detach(), STD, rtol=0.15), energy.log_s.exp()
    x_hat, x_rev = objective.sample_with_proposals(4000, rng=torch.Generator().manual_seed(2))
    assert torch.allclose(x_rev.mean(0), MEAN, atol=0.1) and torch.allclose(x_rev.std(0), STD, rtol=0.15)
    # the proposals alone are centred on the data; the VAE's also have its spread
    assert torch.allclose(x_hat.mean(0), MEAN, atol=0.1), x_hat.mean(0)
    if kind == "coop_vae":
        assert torch.allclose(x_hat.std(0), STD, rtol=0.3), x_hat.std(0)
        assert "generator/kl" in metrics
    assert {"loss/cd", "energy/data", "energy/sample", "revision/rms", "generator/reconstruction"} <= set(metrics)


def test_each_loss_reaches_only_its_own_group():
    torch.manual_seed(0)
    energy, gen = GaussianEnergy(), _generator()
    objective = Cooperative(energy, Langevin(step_size=0.01, n_steps=3), gen)
    losses, _ = objective.loss(Batch(_data(64)), rng=torch.Generator().manual_seed(0))
    g_energy = torch.autograd.grad(losses["energy"], list(gen.parameters()), allow_unused=True)
    assert all(g is None for g in g_energy)  # revised samples are detached from the generator
    g_gen = torch.autograd.grad(losses["generator"], list(energy.parameters()), allow_unused=True)
    assert all(g is None for g in g_gen)


class Double(nn.Module):
    def forward(self, z, cond=None):
        return 2 * z


def test_latent_inference_moves_z_to_the_posterior():
    # x = 2z + ε, σ = 0.3: the posterior of z given x = 2·z_true is N(≈ z_true, 0.15²)
    gen = DecoderGenerator(Double(), 2, sigma=0.3)
    objective = Cooperative(GaussianEnergy(), Langevin(), gen, infer_steps=30, infer_step=0.1)
    rng = torch.Generator().manual_seed(0)
    z_true, z0 = gen.latent(2000, rng), gen.latent(2000, rng)
    z = objective.infer(z0, 2 * z_true, None, rng)
    assert (z0 - z_true).pow(2).mean() > 1.5
    assert (z - z_true).pow(2).mean().sqrt() == pytest.approx(0.15, abs=0.03)


def test_vae_objective_needs_an_encoder_and_conditions_must_agree():
    with pytest.raises(ValueError, match="needs a generator with an encoder"):
        CooperativeVAE(GaussianEnergy(), Langevin(), _generator(encoder=False))
    labelled = DecoderGenerator(MLPDecoder(2, (2,), 8, 1, num_classes=3), 2, 0.3, condition=Condition.LABEL)
    with pytest.raises(ValueError, match="conditioned on 'label' but the energy on 'none'"):
        Cooperative(GaussianEnergy(), Langevin(), labelled, num_classes=3)
    with pytest.raises(ValueError, match="trainable generator with a latent space"):
        Cooperative(GaussianEnergy(), Langevin(), nn.Linear(2, 2))


def test_networks_have_the_documented_shapes():
    z, y = torch.randn(5, 16), torch.tensor([0, 1, 2, 1, 0])
    assert DeconvDecoder(16, (1, 28, 28), 8)(z).shape == (5, 1, 28, 28)
    x = DeconvDecoder(16, (3, 8, 8), 8, num_classes=3)(z, y)
    assert x.shape == (5, 3, 8, 8) and x.abs().max() <= 1  # tanh: images in [−1, 1]
    mu, logvar = ConvEncoder(16, (3, 8, 8), 8, num_classes=3)(x, y)
    assert mu.shape == logvar.shape == (5, 16)
    cond = completion_condition(x, hole_mask((5, 3, 8, 8), 4, "centre", torch.Generator()))
    assert cond.shape == (5, 4, 8, 8)
    assert UNetDecoder(16, (3, 8, 8), 8)(z, cond).shape == (5, 3, 8, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        DeconvDecoder(16, (1, 10, 10), 8)
    with pytest.raises(ValueError, match="needs the labels"):
        DeconvDecoder(16, (1, 8, 8), 8, num_classes=3)(z)


def test_completion_keeps_observed_pixels_exactly_and_conditions_round_trip():
    ctx = BuildContext(event_shape=(1, 8, 8), num_classes=10)
    ctx.built["energy"] = ctx.build("energy", "swish_cnn", hidden=8, condition="completion")
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=3, step_size=1.0, noise=0.5)
    ctx.built["generator"] = ctx.build("generator", "unet", latent_dim=4, channels=8)
    objective = ctx.build("objective", "coop", hole=4)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    missing = hole_mask(tuple(x.shape), 4, "centre", torch.Generator())
    assert torch.equal(missing_from_condition(completion_condition(x, missing)), missing)
    done = objective.complete(x, missing, rng=torch.Generator().manual_seed(0))
    assert torch.equal(done[~missing], x[~missing])
    assert not torch.equal(done[missing], x[missing])
    losses, _ = objective.loss(Batch(x), rng=torch.Generator().manual_seed(0))
    assert set(losses) == {"energy", "generator"} and all(torch.isfinite(v) for v in losses.values())


def test_label_conditional_samples_cycle_through_the_classes():
    ctx = BuildContext(event_shape=(1, 8, 8), num_classes=4)
    ctx.built["energy"] = ctx.build("energy", "swish_cnn", hidden=8, condition="label")
    ctx.built["sampler"] = ctx.build("sampler", "langevin", n_steps=2, step_size=1.0)
    ctx.built["generator"] = ctx.build("generator", "deconv", latent_dim=4, channels=4, condition="label")
    objective = ctx.build("objective", "coop")
    cond, missing, _ = objective.sample_conditions(10, torch.Generator())
    assert cond.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1] and missing is None
    assert objective.sample(10, rng=torch.Generator()).shape == (10, 1, 8, 8)
    with pytest.raises(EbmError, match="conditional = true"):
        objective.loss(Batch(torch.zeros(4, 1, 8, 8)), rng=torch.Generator())


def test_side_by_side_pastes_pictures_left_to_right(tmp_path):
    from PIL import Image

    Image.new("RGB", (30, 20), "red").save(tmp_path / "a.png")
    Image.new("RGB", (40, 25), "blue").save(tmp_path / "b.png")
    side_by_side([("a", tmp_path / "a.png"), ("b", tmp_path / "b.png")], tmp_path / "out.png")
    out = Image.open(tmp_path / "out.png")
    assert out.size == (30 + 10 + 40, 18 + 25)
    assert out.getpixel((5, 25))[:3] == (255, 0, 0) and out.getpixel((50, 25))[:3] == (0, 0, 255)
