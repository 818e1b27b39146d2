"""Generators with a latent prior, learned by alternating back-propagation.

The model is x = g(z) + ε, ε ~ N(0, σ²I) (σ is the generator's ``sigma``), with a prior
p(z) ∝ exp(−E(z)) given by the recipe's [energy]. Every step, for a data batch x:

1. infer z⁺ ~ p(z | x) ∝ exp(−‖x − g(z)‖²/(2σ²) − E(z)) by short-run Langevin from
   z₀ ~ N(0, I) (``posterior_steps`` of δ = ``posterior_step``);
2. the generator regresses x on g(z⁺): loss ‖x − g(z⁺)‖²/(2σ²) (ABP's learning step);
3. ``latent_ebm`` only: draw z⁻ ~ p_α(z) by short-run Langevin from the same z₀
   (``prior_steps`` of δ = ``prior_step``) and learn the prior by maximum likelihood in
   latent space, E(z⁺) − E(z⁻) (the aggregated posterior against the prior).

``latent_ebm`` is the latent-space EBM prior of Pang et al. 2020 (energy ``latent_mlp``);
``abp`` is alternating back-propagation of Han et al. 2017 with the fixed N(0, I) prior
(energy ``latent_gaussian``). Han et al. start each example's inference at its previous z;
the runner hands no example indices, so here, as in Pang et al.'s code, inference is
short-run from noise. Samples after training: prior Langevin (``latent_ebm``) or N(0, I)
(``abp``), then g(z) — the mean, without ε.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ebm_latent.energies import LatentPrior
from ebmcore import Batch, Condition, EbmError, LatentGenerator, Objective
from ebmcore import config as cfg
from ebmcore.kit.latent import latent_langevin


def _posterior_steps() -> object:
    return cfg.positive("Langevin steps of posterior inference p(z | x) (Pang et al.: 20)", default=20)


def _posterior_step() -> object:
    return cfg.positive("δ of posterior inference: z −= δ²/2·∇U + δ·ξ (Pang et al.: 0.1)", default=0.1)


@attrs.frozen
class LatentEBMConfig:
    """Latent-space EBM prior (Pang et al. 2020): prior by latent MLE, generator by ABP."""

    prior_steps: int = cfg.positive("Langevin steps of prior sampling z ~ p_α(z) (Pang et al.: 60)", default=60)
    prior_step: float = cfg.positive("δ of prior sampling: z −= δ²/2·∇E + δ·ξ (Pang et al.: 0.4)", default=0.4)
    posterior_steps: int = _posterior_steps()
    posterior_step: float = _posterior_step()
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "prior Langevin steps for samples after training (default: prior_steps)"})


@attrs.frozen
class ABPConfig:
    """Alternating back-propagation (Han et al. 2017): a generator with the N(0, I) prior."""

    posterior_steps: int = _posterior_steps()
    posterior_step: float = _posterior_step()


class LatentEBM(Objective):
    """``latent_ebm``: the prior energy and the generator, each with its own loss."""

    name = "latent_ebm"

    def __init__(self, prior, generator, *, posterior_steps: int = 20, posterior_step: float = 0.1,
                 prior_steps: int = 60, prior_step: float = 0.4, sample_steps: int | None = None):
        super().__init__()
        if not isinstance(generator, LatentGenerator):
            raise ValueError(f"objective '{self.name}' needs a trainable generator with a latent space "
                             f"(ebm-coop's 'mlp' or 'deconv'), got {type(generator).__name__}")
        if generator.condition is not Condition.NONE:
            raise ValueError(f"objective '{self.name}' has no conditional form: the generator is conditioned "
                             f"on '{generator.condition.value}', set condition = 'none'")
        if not isinstance(prior, LatentPrior):
            raise ValueError(f"objective '{self.name}' needs a prior over latents as its [energy] "
                             f"('latent_mlp' or 'latent_gaussian'), got {type(prior).__name__}")
        if prior.latent_dim != generator.latent_dim:
            raise ValueError(f"the prior [energy] is over latents of dimension {prior.latent_dim} but the "
                             f"generator's latent_dim is {generator.latent_dim}: set energy.latent_dim = "
                             "generator.latent_dim")
        self._check_prior(prior)
        self.prior, self.generator = prior, generator
        self.posterior_steps, self.posterior_step = posterior_steps, posterior_step
        self.prior_steps, self.prior_step, self.sample_steps = prior_steps, prior_step, sample_steps

    def _check_prior(self, prior) -> None:
        if not any(True for _ in prior.parameters()):
            raise ValueError("objective 'latent_ebm' learns the prior, but the energy has no parameters: use "
                             "energy 'latent_mlp' (or objective 'abp' for the fixed N(0, I) prior)")

    @classmethod
    def from_config(cls, c: LatentEBMConfig, ctx) -> LatentEBM:
        who = f"objective '{cls.name}'"
        return cls(ctx.require("energy", who), ctx.require("generator", who), posterior_steps=c.posterior_steps,
                   posterior_step=c.posterior_step, prior_steps=c.prior_steps, prior_step=c.prior_step,
                   sample_steps=c.sample_steps)

    def param_groups(self):
        return {"energy": self.prior, "generator": self.generator}

    # -- the pieces -------------------------------------------------------------------------

    def reconstruction_error(self, x: Tensor, x_rec: Tensor) -> Tensor:
        """‖x − g(z)‖²/(2σ²) per example: −log p(x | z) up to a constant."""
        return (x - x_rec).pow(2).flatten(1).sum(1) / (2 * self.generator.sigma ** 2)

    def infer(self, x: Tensor, *, rng, z0: Tensor | None = None, n_steps: int | None = None) -> Tensor:
        """z ~ p(z | x) by Langevin on U(z) = ‖x − g(z)‖²/(2σ²) + E(z), from ``z0`` (default N(0, I))."""
        z0 = self.generator.latent(len(x), rng) if z0 is None else z0
        steps = self.posterior_steps if n_steps is None else n_steps
        return latent_langevin(lambda z: self.reconstruction_error(x, self.generator.decode(z)) + self.prior(z),
                               z0, steps, self.posterior_step, rng=rng)

    def sample_prior(self, n: int, *, rng, z0: Tensor | None = None, n_steps: int | None = None) -> Tensor:
        """z ~ p_α(z) by Langevin on E from ``z0`` (default N(0, I))."""
        z0 = self.generator.latent(n, rng) if z0 is None else z0
        steps = self.prior_steps if n_steps is None else n_steps
        return latent_langevin(self.prior, z0, steps, self.prior_step, rng=rng)

    def anomaly_scores(self, x: Tensor, *, rng, n_steps: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction error, prior energy, g(z)) per example at z ~ p(z | x): their sum is
        −log p(x, z) + const, the anomaly score of Pang et al. 2020 (higher: more anomalous)."""
        z = self.infer(x, rng=rng, n_steps=n_steps)
        with torch.no_grad():
            x_rec = self.generator.decode(z)
            return self.reconstruction_error(x, x_rec), self.prior(z), x_rec

    # -- Objective --------------------------------------------------------------------------

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        z0 = self.generator.latent(len(x), rng)  # both chains start here, as in Pang et al.'s code
        z_pos = self.infer(x, rng=rng, z0=z0)
        rec = self.reconstruction_error(x, self.generator.decode(z_pos))
        metrics = {"generator/reconstruction": rec.mean().detach(),
                   "reconstruction/mse": rec.mean().detach() * 2 * self.generator.sigma ** 2 / x[0].numel()}
        losses = {"generator": rec.mean()}
        prior_loss, prior_metrics = self.prior_loss(z_pos, z0, rng)
        if prior_loss is not None:
            losses["energy"] = prior_loss
        return losses, {**metrics, **prior_metrics}

    def prior_loss(self, z_pos: Tensor, z0: Tensor, rng) -> tuple[Tensor | None, dict[str, Tensor]]:
        """Maximum likelihood of the prior in latent space: E(z⁺) − E(z⁻)."""
        z_neg = self.sample_prior(len(z0), rng=rng, z0=z0)
        e = self.prior(torch.cat([z_pos, z_neg]))
        e_pos, e_neg = e[: len(z_pos)], e[len(z_pos):]
        cd = e_pos.mean() - e_neg.mean()
        return cd, {"loss/cd": cd.detach(), "energy/posterior": e_pos.mean().detach(),
                    "energy/prior": e_neg.mean().detach()}

    def sample(self, n, *, rng, cond=None):
        if cond is not None:
            raise EbmError(f"objective '{self.name}' is unconditional: it cannot sample given a condition")
        steps = self.sample_steps if self.sample_steps is not None else self.prior_steps
        z = self.sample_prior(n, rng=rng, n_steps=steps)
        with torch.no_grad():
            return self.generator.decode(z)


class AlternatingBackprop(LatentEBM):
    """``abp``: the generator alone, with the N(0, I) prior (energy ``latent_gaussian``)."""

    name = "abp"

    def _check_prior(self, prior) -> None:
        if any(True for _ in prior.parameters()):
            raise ValueError("objective 'abp' has the fixed N(0, I) prior, but the energy has parameters: use "
                             "energy 'latent_gaussian' (or objective 'latent_ebm' to learn the prior)")

    @classmethod
    def from_config(cls, c: ABPConfig, ctx) -> AlternatingBackprop:
        who = f"objective '{cls.name}'"
        return cls(ctx.require("energy", who), ctx.require("generator", who), posterior_steps=c.posterior_steps,
                   posterior_step=c.posterior_step)

    def param_groups(self):
        return {"generator": self.generator}

    def sample_prior(self, n, *, rng, z0=None, n_steps=None):
        return self.generator.latent(n, rng) if z0 is None else z0  # N(0, I) is sampled exactly

    def prior_loss(self, z_pos, z0, rng):
        return None, {"energy/posterior": self.prior(z_pos).mean().detach()}
