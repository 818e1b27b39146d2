import pytest
import torch
from ebm_coop import Reconstruction, Triangle
from ebm_coop.generators import DecoderGenerator
from ebm_coop.networks import (
    ConvEncoder,
    DeconvDecoder,
    MLPDecoder,
    MLPEncoder,
    UNetDecoder,
)
from ebm_coop.triangle import ReconstructionConfig, TriangleConfig
from ebm_langevin import Langevin
from torch import nn

from ebmcore import Batch, Condition, Data, EbmError, Energy


class LinearEnergy(Energy):
    """E(x) = w·x + b: every term of the losses can be written out by hand."""

    def __init__(self, dim=3):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x, cond=None):
        return x @ self.w + self.b


class LinearDecoder(nn.Module):
    def __init__(self, latent, dim):
        super().__init__()
        self.net = nn.Linear(latent, dim)

    def forward(self, z, cond=None):
        return self.net(z)


class LinearEncoder(nn.Module):
    def __init__(self, dim, latent):
        super().__init__()
        self.mu, self.logvar = nn.Linear(dim, latent), nn.Linear(dim, latent)

    def forward(self, x, cond=None):
        return self.mu(x), self.logvar(x)


def _linear_triangle(**kw):
    torch.manual_seed(0)
    gen = DecoderGenerator(LinearDecoder(2, 3), 2, sigma=0.5, encoder=LinearEncoder(3, 2))
    return Triangle(LinearEnergy(), Langevin(step_size=0.01, n_steps=3), gen, **kw)


def test_each_players_loss_is_the_hand_computed_triangle_term():
    objective = _linear_triangle(latent_weight=0.3, kl_weight=0.7)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    losses, metrics = objective.loss(Batch(x), rng=torch.Generator().manual_seed(1))
    # the objective draws z ~ N(0, I) for the generator, then ε for z_q = μ + σ_q·ε: the same draws by hand
    rng = torch.Generator().manual_seed(1)
    z, eps = torch.randn(6, 2, generator=rng), torch.randn(6, 2, generator=rng)
    dec, enc, e = objective.generator.decoder.net, objective.generator.encoder, objective.energy
    with torch.no_grad():
        x_gen = dec(z)
        energy = lambda v: v @ e.w + e.b
        mu, logvar = enc.mu(x), enc.logvar(x)
        rec = ((x - dec(mu + (logvar / 2).exp() * eps)) ** 2).sum(1) / (2 * 0.25)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        mu_g, logvar_g = enc.mu(x_gen), enc.logvar(x_gen)
        nll = -torch.distributions.Normal(mu_g, (logvar_g / 2).exp()).log_prob(z).sum(1)
        expected_energy = energy(x).mean() - energy(x_gen).mean()
        expected_generator = rec.mean() + 0.7 * kl.mean() + energy(x_gen).mean() + 0.3 * nll.mean()
    assert losses["energy"].item() == pytest.approx(expected_energy.item(), rel=1e-5)
    assert losses["generator"].item() == pytest.approx(expected_generator.item(), rel=1e-5)
    assert metrics["generator/latent_nll"].item() == pytest.approx(nll.mean().item(), rel=1e-5)
    assert metrics["reconstruction/mse"].item() == pytest.approx((rec.mean() * 2 * 0.25 / 3).item(), rel=1e-5)


def test_each_group_learns_only_from_its_own_terms():
    objective = _linear_triangle()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))
    gen, energy = objective.generator, objective.energy

    def grads(module, loss_name):
        losses, _ = objective.loss(Batch(x), rng=torch.Generator().manual_seed(1))
        return torch.autograd.grad(losses[loss_name], list(module.parameters()), allow_unused=True)

    # the energy's loss sees the generator's samples detached: no gradient reaches θ or φ
    assert all(g is None for g in grads(gen, "energy"))
    # E(g(z)) reaches the decoder (θ) but never the encoder (φ): scaling the energy leaves φ's gradient alone
    enc_before, dec_before = grads(gen.encoder, "generator"), grads(gen.decoder, "generator")
    with torch.no_grad():
        energy.w.mul_(10.0)
    enc_after, dec_after = grads(gen.encoder, "generator"), grads(gen.decoder, "generator")
    assert all(torch.allclose(a, b) for a, b in zip(enc_before, enc_after))
    assert not torch.allclose(dec_before[0], dec_after[0])
    # the decoder's gradient of E(g(z)) is exactly that change: mean over z of w zᵀ (×9 more w)
    rng = torch.Generator().manual_seed(1)
    z = torch.randn(8, 2, generator=rng)
    w0 = energy.w.detach() / 10
    assert torch.allclose(dec_after[0] - dec_before[0], 9 * torch.outer(w0, z.mean(0)), atol=1e-5)


def test_revision_changes_only_what_the_energy_learns_from():
    plain, revised = _linear_triangle(), _linear_triangle(revise_steps=3)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))
    a, ma = plain.loss(Batch(x), rng=torch.Generator().manual_seed(1))
    b, mb = revised.loss(Batch(x), rng=torch.Generator().manual_seed(1))
    assert "revision/rms" in mb and mb["revision/rms"] > 0 and "revision/rms" not in ma
    assert a["energy"].item() != pytest.approx(b["energy"].item())
    # E(g(z)) is on the generator's own output either way
    assert ma["generator/energy"].item() == pytest.approx(mb["generator/energy"].item())


def test_samples_and_reconstructions_have_the_data_shape():
    dec, enc = DeconvDecoder(8, (1, 8, 8), 4), ConvEncoder(8, (1, 8, 8), 4)
    energy = LinearEnergy(64)
    energy.forward = lambda x, cond=None: x.flatten(1) @ energy.w  # an image energy in one line
    objective = Triangle(energy, Langevin(step_size=0.01, n_steps=2), DecoderGenerator(dec, 8, 0.3, enc),
                         sample_steps=2)
    objective.eval()
    rng = torch.Generator().manual_seed(0)
    x_hat, x_rev = objective.sample_with_proposals(5, rng=rng)
    assert x_hat.shape == x_rev.shape == (5, 1, 8, 8) and not torch.equal(x_hat, x_rev)
    assert objective.sample(5, rng=rng).shape == (5, 1, 8, 8)
    assert objective.reconstruct(torch.zeros(3, 1, 8, 8)).shape == (3, 1, 8, 8)
    still = Triangle(energy, Langevin(step_size=0.01, n_steps=2), DecoderGenerator(dec, 8, 0.3, enc))
    x_hat, x_rev = still.sample_with_proposals(5, rng=rng)  # sample_steps = 0: the generator alone
    assert torch.equal(x_hat, x_rev)


def test_the_triangle_refuses_generators_it_cannot_train():
    with pytest.raises(ValueError, match="set encoder = true in \\[generator\\]"):
        Triangle(LinearEnergy(), Langevin(), DecoderGenerator(LinearDecoder(2, 3), 2, 0.3))
    with pytest.raises(ValueError, match="trainable generator with a latent space"):
        Triangle(LinearEnergy(), Langevin(), nn.Linear(2, 3))
    unet = DecoderGenerator(UNetDecoder(4, (1, 8, 8), 4), 4, 0.3, condition=Condition.COMPLETION)
    with pytest.raises(ValueError, match="no completion form"):
        Triangle(LinearEnergy(), Langevin(), unet)
    assert TriangleConfig().revise_steps == 0 and TriangleConfig().latent_weight == 1.0  # the derivation's


class TinyData(Data):
    event_shape, batch_size = (1, 4, 4), 4

    def heldout(self):
        return Batch(torch.linspace(-1, 1, 7 * 16).view(7, 1, 4, 4))

    def save_samples(self, x, path):
        raise AssertionError("not called")


def test_reconstruction_task_scores_held_out_images_and_draws_two_rows(tmp_path):
    gen = DecoderGenerator(MLPDecoder(2, (1, 4, 4), 8, 1), 2, 0.3, MLPEncoder(2, (1, 4, 4), 8, 1))
    energy = LinearEnergy(16)
    energy.forward = lambda x, cond=None: x.flatten(1) @ energy.w
    objective = Triangle(energy, Langevin(), gen)
    metrics = Reconstruction(ReconstructionConfig(n=5, batch=2, show=3), "cpu").run(
        objective, TinyData(), rng=torch.Generator().manual_seed(0), out=tmp_path)
    x = TinyData().heldout().x[:5]
    assert metrics["n"] == 5
    assert metrics["mse"] == pytest.approx((objective.reconstruct(x) - x).pow(2).mean().item(), rel=1e-6)
    from PIL import Image

    picture = Image.open(tmp_path / "reconstruction.png")
    assert picture.size == (4 * (3 * 5 + 1), 4 * (2 * 5 + 1))  # 3 columns, 2 rows of 4×4 images with borders
    with pytest.raises(EbmError, match="needs objective 'triangle'"):
        Reconstruction(ReconstructionConfig(), "cpu").run(object(), TinyData(), rng=None, out=tmp_path)
