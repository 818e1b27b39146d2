"""The divergence triangle (Han, Nijkamp, Fang, Hill, Zhu, Wu, CVPR 2019): generator,
energy-based model and inference network trained jointly, without MCMC.

Three joint distributions over (x, z):

- Q(x, z) = q_data(x) q_φ(z | x): the data with the inference network (the encoder);
- P(x, z) = p(z) p_θ(x | z): the generator, z ~ N(0, I), x = g_θ(z) + ε, ε ~ N(0, σ²I);
- Π(x, z) = π_α(x) q_φ(z | x): the EBM π_α(x) = exp(−E_α(x))/Z(α) with the encoder.

The objective is min over θ, φ and max over α of

    Δ = KL(Q ‖ P) + KL(P ‖ Π) − KL(Q ‖ Π).

Writing out each term (constants dropped; log Z(α) enters KL(P ‖ Π) and KL(Q ‖ Π) with
the same sign and cancels in their difference, and q_φ cancels inside KL(Q ‖ Π), which
is KL(q_data ‖ π_α), so it depends on α alone):

- KL(Q ‖ P) = E_Q[‖x − g(z)‖²/(2σ²)] + E_data[KL(q_φ(z | x) ‖ N(0, I))] + const: the VAE's
  negative ELBO on the data (θ and φ);
- KL(P ‖ Π) = E_P[E(x) − log q_φ(z | x)] + log Z − H(P): the generator's samples should
  have low energy and their latent should be recoverable by the encoder (θ, φ, α); the
  entropy of p_θ(x | z) is fixed by σ, so H(P) is constant in θ;
- −KL(Q ‖ Π) = −E_data[E(x)] − log Z + const (α only).

So each player's loss is (x data, z ~ N(0, I), x̃ = g(z)):

- EBM (max over α of Δ, i.e. minimise −Δ): E(x) − E(x̃), maximum likelihood with the
  generator's samples standing in for the model's, as in CoopNets but *without* the
  Langevin revision (``revise_steps = 0``, the paper: "learn the EBM without MCMC");
- generator θ: ‖x − g(z_q)‖²/(2σ²) with z_q ~ q_φ(z | x) (from KL(Q ‖ P)) plus
  E(g(z)) − log q_φ(z | g(z)) (from KL(P ‖ Π), gradients through x̃ = g(z));
- inference φ: the same reconstruction plus KL(q_φ(z | x) ‖ N(0, I)) (the rest of the ELBO)
  plus −log q_φ(z | x̃) (the wake–sleep "sleep" term: infer the latent that made x̃).

θ and φ both *minimise* Δ, so they share one loss, the sum of the terms above: its
gradient with respect to θ has θ's terms only (the KL term has no θ) and with respect to φ
φ's only (E(g(z)) has no φ). The runner takes the gradient of each group's loss with
respect to that group's parameters only (docs/design.md), so the energy never learns
from the generator's loss and the generator never from the energy's. One group
``generator`` (decoder and encoder, as :class:`ebmcore.LatentGenerator` holds them)
therefore gets the exact gradients of Δ; the authors' code (``enijkamp/triangle``) also
gives the generator and the encoder the same learning rate (3e-4; the EBM 1e-4).

What the authors' code weights differently, here recipe settings: the sleep term by 0.1
(``latent_weight``) and the KL by 1/latent_dim (its KL is a mean over latent dimensions
too; ``kl_weight``); both default to 1, the derivation's value. x̃ = g(z) without ε, as in
their code. Here x̃ may also be revised by ``revise_steps`` Langevin steps under E before
the EBM sees it (CoopNets' ancestral Langevin: a departure from the paper, 0 by default);
the generator's E(g(z)) term is always on its own output. Samples after training are the
generator's, revised by ``sample_steps`` Langevin steps (0: the generator alone).
Completion generators are refused; label-conditional ones pass the label to g, q and E.

Task ``reconstruction``: held-out images, their reconstructions g(μ_φ(x)) through the
encoder's mean, the per-pixel MSE, and one picture (data row over reconstruction row).
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import torch
from torch import Tensor

from ebm_coop.objectives import Cooperative
from ebmcore import Batch, Condition, EbmError, LatentGenerator, Task
from ebmcore import config as cfg
from ebmcore.kit.losses import maximum_likelihood_loss
from ebmcore.kit.pictures import image_grid_png
from ebmcore.kit.replicas import one_row_per_chain


@attrs.frozen
class TriangleConfig:
    """The divergence triangle (Han et al. 2019): generator, EBM and inference net, no MCMC."""

    latent_weight: float = cfg.non_negative("weight of −log q(z | g(z)), the sleep term of KL(P ‖ Π) (derivation: "
                                            "1; the authors' code: 0.1)", default=1.0)
    kl_weight: float = cfg.non_negative("weight of KL(q(z | x) ‖ N(0, I)) in the data's ELBO (derivation: 1; the "
                                        "authors' code: 1/latent_dim)", default=1.0)
    revise_steps: int = cfg.non_negative("Langevin steps revising the generator's samples before the EBM learns "
                                         "from them (0: the paper, no MCMC; >0: CoopNets-style revision)",
                                         default=0)
    sample_steps: int = cfg.non_negative("Langevin steps revising the generator's samples after training (0: "
                                         "the generator alone)", default=0)
    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    data_noise: float = cfg.non_negative("std of Gaussian noise added to each data batch", default=0.0)


def gaussian_nll(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """−log N(z; μ, diag exp(logvar)) per example, with its constant d/2·log 2π."""
    return 0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag exp(logvar)) ‖ N(0, I)) per example."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


class Triangle(Cooperative):
    """``triangle``: groups ``energy`` (α) and ``generator`` (θ and φ, both minimising Δ).

    Built on :class:`Cooperative` for proposing, revising and drawing samples, so the
    ``revision`` task shows what the Langevin revision adds here too."""

    name = "triangle"

    def __init__(self, energy, sampler, generator, data=None, *, latent_weight: float = 1.0,
                 kl_weight: float = 1.0, revise_steps: int = 0, sample_steps: int = 0, alpha: float = 0.0,
                 data_noise: float = 0.0, num_classes: int | None = None):
        if not isinstance(generator, LatentGenerator):
            raise ValueError(f"objective 'triangle' needs a [generator] that is a trainable generator with a latent "
                             f"space and an encoder ('mlp' or 'deconv' with encoder = true), got "
                             f"{type(generator).__name__}")
        # a completion generator would also need the hole of Cooperative; the triangle has no such form
        if generator.condition is Condition.COMPLETION:
            raise ValueError("objective 'triangle' has no completion form: use a [generator] with condition "
                             "'none' or 'label' ('mlp' or 'deconv')")
        super().__init__(energy, sampler, generator, data, alpha=alpha, data_noise=data_noise,
                         sample_steps=sample_steps, num_classes=num_classes)
        if not self.generator.can_encode:
            raise ValueError("objective 'triangle' needs an inference network q(z | x): set encoder = true "
                             "in [generator]")
        self.latent_weight, self.kl_weight, self.revise_steps = latent_weight, kl_weight, revise_steps

    @classmethod
    def from_config(cls, c: TriangleConfig, ctx) -> Triangle:
        who = f"objective '{cls.name}'"
        return cls(ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who),
                   ctx.require("generator", who), ctx.built.get("data"), latent_weight=c.latent_weight,
                   kl_weight=c.kl_weight, revise_steps=c.revise_steps, sample_steps=c.sample_steps, alpha=c.alpha,
                   data_noise=c.data_noise, num_classes=ctx.num_classes)

    # -- the three players' terms ----------------------------------------------------------

    def data_terms(self, x: Tensor, cond, rng) -> tuple[Tensor, Tensor, Tensor]:
        """KL(Q ‖ P)'s terms per example: (reconstruction ‖x − g(z_q)‖²/(2σ²) with z_q ~ q(z | x)
        reparameterised, KL(q(z | x) ‖ N(0, I)), g(z_q))."""
        mu, logvar = self.generator.encode(x, cond)
        eps = torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
        x_rec = self.generator.decode(mu + (0.5 * logvar).exp() * eps, cond)
        return self._reconstruction(x, x_rec), kl_to_standard_normal(mu, logvar), x_rec

    def sample_terms(self, z: Tensor, x_gen: Tensor, cond) -> tuple[Tensor, Tensor]:
        """KL(P ‖ Π)'s terms per example at x̃ = g(z) (with graph): (E(x̃), −log q(z | x̃))."""
        energy = self.energy(x_gen) if cond is None else self.energy(x_gen, cond)
        return energy, gaussian_nll(z, *self.generator.encode(x_gen, cond))

    # -- Objective -------------------------------------------------------------------------

    def loss(self, batch: Batch, *, rng):
        x_pos, labels = batch
        cond, _ = self._condition(x_pos, labels, rng)
        if self.data_noise:
            x_pos = x_pos + self.data_noise * torch.randn(x_pos.shape, generator=rng, device=x_pos.device)
        z, x_gen, _ = self.propose(len(x_pos), rng=rng, cond=cond)
        # the EBM's samples: the generator's, or their Langevin revision (detached either way)
        x_neg = self.revise(x_gen, rng=rng, cond=cond, n_steps=self.revise_steps) if self.revise_steps \
            else x_gen.detach()
        e_loss, metrics = maximum_likelihood_loss(self.energy, x_pos, x_neg, cond, self.alpha)
        rec, kl, _ = self.data_terms(x_pos, cond, rng)
        e_gen, latent_nll = self.sample_terms(z, x_gen, cond)
        g_loss = rec.mean() + self.kl_weight * kl.mean() + e_gen.mean() + self.latent_weight * latent_nll.mean()
        metrics.update({
            "generator/reconstruction": rec.mean().detach(),
            "generator/kl": kl.mean().detach(),
            "generator/energy": e_gen.mean().detach(),
            "generator/latent_nll": latent_nll.mean().detach(),
            # per pixel, data units: comparable with ebm-latent's reconstruction/mse (training batches)
            "reconstruction/mse": rec.mean().detach() * 2 * self.generator.sigma ** 2 / x_pos[0].numel(),
        })
        if self.revise_steps:
            metrics["revision/rms"] = (x_neg - x_gen.detach()).pow(2).mean().sqrt()
        return {"energy": e_loss, "generator": g_loss}, metrics

    def sample_with_proposals(self, n, *, rng, cond=None, n_steps=None) -> tuple[Tensor, Tensor]:
        """(x̂, x̃): the generator's samples and their revision by ``n_steps`` (default
        ``sample_steps``; 0 returns the generator's samples twice)."""
        steps = self.sample_steps if n_steps is None else n_steps
        if cond is None:
            cond, _, _ = self.sample_conditions(n, rng)
        with torch.no_grad():
            _, _, x_hat = self.propose(n, rng=rng, cond=cond)
        return x_hat, (self.revise(x_hat, rng=rng, cond=cond, n_steps=steps) if steps else x_hat)

    def reconstruct(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """g(μ_φ(x)): the reconstruction through the encoder's mean, without gradients."""
        with torch.no_grad():
            return self.generator.decode(self.generator.encode(x, cond)[0], cond)


@attrs.frozen
class ReconstructionConfig:
    """Held-out images through the inference network and back: per-pixel MSE and a picture."""

    n: int = cfg.positive("held-out images reconstructed (the first n)", default=1000)
    batch: int = cfg.positive("images per batch", default=500)
    show: int = cfg.positive("images in each row of the picture", default=16)


class Reconstruction(Task):
    """``reconstruction``: x → μ_φ(x) → g(μ_φ(x)) on held-out images (objective ``triangle``)."""

    def __init__(self, c: ReconstructionConfig, device):
        self.c, self.device = c, torch.device(device)

    @classmethod
    def from_config(cls, c: ReconstructionConfig, ctx) -> Reconstruction:
        return cls(c, ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        if not isinstance(objective, Triangle):
            raise EbmError("task 'reconstruction' needs objective 'triangle' (an inference network q(z | x))")
        held = data.heldout()
        if held is None:
            raise EbmError("task 'reconstruction' needs data with a held-out split")
        x = held.x[: self.c.n]
        labelled = objective.condition is Condition.LABEL
        if labelled and held.cond is None:
            raise EbmError("task 'reconstruction' of a label-conditional model needs labelled held-out data")
        labels = held.cond[: self.c.n] if labelled else torch.zeros(len(x))  # zeros: placeholders, not passed
        x_rec = torch.cat([
            objective.reconstruct(xs.to(self.device), ys.to(self.device) if labelled else None).cpu()
            for xs, ys in zip(x.split(self.c.batch), labels.split(self.c.batch))])
        if len(data.event_shape) == 3:  # images: data row over reconstruction row
            show = min(self.c.show, len(x))
            image_grid_png(torch.cat([x[:show], x_rec[:show]]), out / "reconstruction.png", columns=show,
                           limit=2 * show)
        return {"mse": (x_rec - x).pow(2).mean().item(), "n": float(len(x))}
