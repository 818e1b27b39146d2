"""Cooperative learning: a generator proposes, Langevin under the EBM revises, both learn.

Every step (Xie et al. 2018, CoopNets; seed 002's variational MCMC teaching):

1. propose x̂ = g(z, cond), z ~ N(0, I);
2. revise: x̃ = K Langevin steps under E from x̂ (the *ancestral Langevin sampler*);
3. the EBM learns by maximum likelihood with x̃ as its model samples: E(data) − E(x̃);
4. the generator learns to reproduce x̃ (MCMC teaching):
   - ``coop``: ‖x̃ − g(z)‖²/(2σ²), with z the latent that proposed x̃, optionally moved by
     a few Langevin steps on the posterior p(z | x̃) (``infer_steps``);
   - ``coop_vae``: the VAE's negative ELBO of x̃, z from the encoder q(z | x̃):
     ‖x̃ − g(z)‖²/(2σ²) + γ·KL(q(z | x̃) ‖ N(0, I)), γ ≈ 2 in seed 002.

The condition comes from the generator: none, a class label (data with ``conditional =
true``), or completion, where the objective cuts a hole in each training image and the
model learns p(x | observed part) (:mod:`ebmcore.kit.masks`); observed pixels are kept exactly
through the revision. Samples after training are proposals revised by ``sample_steps``.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ebmcore import Batch, Condition, EbmError, LatentGenerator, Objective
from ebmcore import config as cfg
from ebmcore.kit.latent import latent_langevin
from ebmcore.kit.losses import maximum_likelihood_loss
from ebmcore.kit.masks import (
    Region,
    completion_condition,
    hole_mask,
    missing_from_condition,
)
from ebmcore.kit.replicas import one_row_per_chain


def _sample_steps() -> object:
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": "Langevin steps revising proposals for samples after training "
                                        "(default: the sampler's n_steps)"})


@attrs.frozen
class CoopConfig:
    """CoopNets (Xie et al. 2018): generator proposals revised by Langevin; MCMC teaching."""

    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    data_noise: float = cfg.non_negative("std of Gaussian noise added to each data batch", default=0.0)
    sample_steps: int | None = _sample_steps()
    infer_steps: int = cfg.non_negative("Langevin steps on p(z | x̃) before the generator learns (0: keep "
                                        "the proposing z, CoopNets' fast variant)", default=0)
    infer_step: float = cfg.positive("δ of latent inference: z += δ²/2·∇log p(z | x̃) + δ·ξ", default=0.1)
    hole: int = cfg.positive("completion generators: side of the square hole cut in each training image",
                             default=12)
    region: Region = cfg.doc("completion generators: where the hole is ('centre', 'random', 'bottom')",
                             default="centre")


@attrs.frozen
class CoopVAEConfig:
    """The EBM with a VAE as amortized sampler (seed 002): VAE proposals revised by Langevin."""

    kl_weight: float = cfg.non_negative("γ, the weight of KL(q(z | x̃) ‖ N(0, I)) (seed 002: about 2)",
                                        default=2.0)
    alpha: float = cfg.non_negative("weight of the energy-magnitude regulariser α·(E⁺² + E⁻²)", default=0.0)
    data_noise: float = cfg.non_negative("std of Gaussian noise added to each data batch", default=0.0)
    sample_steps: int | None = _sample_steps()
    hole: int = cfg.positive("completion generators: side of the square hole cut in each training image",
                             default=12)
    region: Region = cfg.doc("completion generators: where the hole is ('centre', 'random', 'bottom')",
                             default="centre")


class Cooperative(Objective):
    """``coop``; :class:`CooperativeVAE` changes only how the generator learns."""

    name = "coop"

    def __init__(self, energy, sampler, generator, data=None, *, alpha: float = 0.0, data_noise: float = 0.0,
                 sample_steps: int | None = None, hole: int = 12, region: Region = "centre",
                 num_classes: int | None = None, infer_steps: int = 0, infer_step: float = 0.1):
        super().__init__()
        if not isinstance(generator, LatentGenerator):
            raise ValueError(f"objective '{self.name}' needs a trainable generator with a latent space "
                             f"(ebm-coop's 'mlp', 'deconv' or 'unet'), got {type(generator).__name__}")
        self.energy, self.sampler, self.generator, self.data = energy, sampler, generator, data
        self.condition = generator.condition
        if energy.condition is not self.condition:
            raise ValueError(f"the generator is conditioned on '{self.condition.value}' but the energy on "
                             f"'{energy.condition.value}': set both to the same condition")
        if self.condition is Condition.LABEL and not num_classes:
            raise ValueError("condition 'label' needs data with classes")
        self.alpha, self.data_noise, self.sample_steps = alpha, data_noise, sample_steps
        self.hole, self.region, self.num_classes = hole, region, num_classes
        self.infer_steps, self.infer_step = infer_steps, infer_step

    @classmethod
    def from_config(cls, c: CoopConfig, ctx) -> Cooperative:
        return cls._build(c, ctx, infer_steps=c.infer_steps, infer_step=c.infer_step)

    @classmethod
    def _build(cls, c, ctx, **extra):
        who = f"objective '{cls.name}'"
        return cls(ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.require("generator", who),
                   ctx.built.get("data"), alpha=c.alpha, data_noise=c.data_noise, sample_steps=c.sample_steps,
                   hole=c.hole, region=c.region, num_classes=ctx.num_classes, **extra)

    def param_groups(self):
        return {"energy": self.energy, "generator": self.generator}

    # -- the pieces -------------------------------------------------------------------------

    def _condition(self, x: Tensor, labels: Tensor | None, rng) -> tuple[Tensor | None, Tensor | None]:
        """(cond, missing) for a batch: labels, a completion condition, or nothing."""
        if self.condition is Condition.LABEL:
            if labels is None:
                raise EbmError(f"objective '{self.name}' with a label-conditional generator needs labels: "
                               "set conditional = true in [data]")
            return labels, None
        if self.condition is Condition.COMPLETION:
            missing = hole_mask(tuple(x.shape), self.hole, self.region, rng).to(x.device)
            return completion_condition(x, missing), missing
        return None, None

    def propose(self, n: int, *, rng, cond=None, missing=None, observed=None) -> tuple[Tensor, Tensor, Tensor]:
        """(z, g(z), x̂): latents, the generator's output (with graph) and the proposals, which
        for completion take their observed pixels from ``observed``."""
        z = self.generator.latent(n, rng)
        x_raw = self.generator.decode(z, cond)
        x_hat = x_raw if missing is None else torch.where(missing, x_raw, observed)
        return z, x_raw, x_hat

    def revise(self, x_hat: Tensor, *, rng, cond=None, missing=None, n_steps: int | None = None) -> Tensor:
        """x̃: Langevin from x̂ under the energy (observed pixels kept for completion)."""
        mask = None if missing is None else ~missing
        return self.sampler.run(x_hat.detach(), self.energy, n_steps, rng=rng, cond=cond, mask=mask)

    def _reconstruction(self, x: Tensor, x_rec: Tensor) -> Tensor:
        """‖x − g(z)‖²/(2σ²) per example."""
        return (x - x_rec).pow(2).flatten(1).sum(1) / (2 * self.generator.sigma ** 2)

    def infer(self, z: Tensor, x: Tensor, cond, rng) -> Tensor:
        """Langevin on −log p(z | x) = ‖x − g(z)‖²/(2σ²) + ‖z‖²/2 + const (ABP's inference step)."""
        def potential(z):
            return self._reconstruction(x, self.generator.decode(z, cond)) + z.pow(2).sum(1) / 2

        return latent_langevin(potential, z, self.infer_steps, self.infer_step, rng=rng)

    def generator_loss(self, z: Tensor, x_hat_raw: Tensor, x_rev: Tensor, cond, rng) -> tuple[Tensor, dict]:
        if self.infer_steps:
            x_hat_raw = self.generator.decode(self.infer(z, x_rev, cond, rng), cond)
        rec = self._reconstruction(x_rev, x_hat_raw).mean()
        return rec, {"generator/reconstruction": rec.detach()}

    # -- Objective --------------------------------------------------------------------------

    def loss(self, batch: Batch, *, rng):
        x_pos, labels = batch
        n = len(x_pos)
        cond, missing = self._condition(x_pos, labels, rng)
        if self.data_noise:
            x_pos = x_pos + self.data_noise * torch.randn(x_pos.shape, generator=rng, device=x_pos.device)
        z, x_raw, x_hat = self.propose(n, rng=rng, cond=cond, missing=missing, observed=x_pos)
        x_rev = self.revise(x_hat, rng=rng, cond=cond, missing=missing)
        e_loss, metrics = maximum_likelihood_loss(self.energy, x_pos, x_rev, cond, self.alpha)
        g_loss, g_metrics = self.generator_loss(z, x_raw, x_rev, cond, rng)
        # how far Langevin moved the proposals (root mean square per coordinate)
        metrics["revision/rms"] = (x_rev - x_hat.detach()).pow(2).mean().sqrt()
        return {"energy": e_loss, "generator": g_loss}, {**metrics, **g_metrics}

    def sample_conditions(self, n: int, rng) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(cond, missing, observed) for ``n`` samples when none are given: labels 0, 1, …, K−1, 0, …
        (every class equally often), or the first held-out images with the training hole."""
        device = self.generator.device
        if self.condition is Condition.LABEL:
            return torch.arange(n, device=device) % self.num_classes, None, None
        if self.condition is Condition.COMPLETION:
            held = self.data.heldout()
            source = self.data.dataset().x if held is None else held.x
            x = source[torch.arange(n) % len(source)].to(device)
            missing = hole_mask(tuple(x.shape), self.hole, self.region, rng).to(device)
            return completion_condition(x, missing), missing, x
        return None, None, None

    def sample_with_proposals(self, n, *, rng, cond=None, n_steps=None) -> tuple[Tensor, Tensor]:
        """(x̂, x̃): proposals and their revision by ``n_steps`` (default ``sample_steps``)."""
        missing = observed = None
        if cond is None:
            cond, missing, observed = self.sample_conditions(n, rng)
        elif self.condition is Condition.COMPLETION:
            missing = missing_from_condition(cond)
            observed = cond[:, :-1]
        with torch.no_grad():
            _, _, x_hat = self.propose(n, rng=rng, cond=cond, missing=missing, observed=observed)
        steps = self.sample_steps if n_steps is None else n_steps
        return x_hat, self.revise(x_hat, rng=rng, cond=cond, missing=missing, n_steps=steps)

    def sample(self, n, *, rng, cond=None):
        return self.sample_with_proposals(n, rng=rng, cond=cond)[1]

    @property
    def completes(self) -> bool:
        return self.condition is Condition.COMPLETION

    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """Fill the ``missing`` pixels of ``x`` (completion generators only)."""
        if self.condition is not Condition.COMPLETION:
            raise EbmError(f"objective '{self.name}' completes images only with a completion generator "
                           "(ebm-coop's 'unet')")
        cond = completion_condition(x, missing)
        return self.sample_with_proposals(len(x), rng=rng, cond=cond, n_steps=n_steps)[1]


class CooperativeVAE(Cooperative):
    """``coop_vae``: the generator is a VAE that learns from the revised samples by its ELBO."""

    name = "coop_vae"

    def __init__(self, *args, kl_weight: float = 2.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.generator.can_encode:
            raise ValueError("objective 'coop_vae' needs a generator with an encoder: set encoder = true")
        self.kl_weight = kl_weight

    @classmethod
    def from_config(cls, c: CoopVAEConfig, ctx) -> CooperativeVAE:
        return cls._build(c, ctx, kl_weight=c.kl_weight)

    def generator_loss(self, z, x_hat_raw, x_rev, cond, rng):
        mu, logvar = self.generator.encode(x_rev, cond)
        eps = torch.randn(mu.shape, generator=rng, device=mu.device)
        z_q = mu + (0.5 * logvar).exp() * eps
        rec = self._reconstruction(x_rev, self.generator.decode(z_q, cond)).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return rec + self.kl_weight * kl, {"generator/reconstruction": rec.detach(), "generator/kl": kl.detach()}
