"""Contrastive estimation: learn an EBM by telling data from samples of a known density.

Both objectives model log p_θ(x) = −E(x) − c with a learned log-normaliser c (``log_z``,
trained with the energy), and classify data (y = 1) against ν·n noise samples (y = 0) by
logistic regression on h(x) = log p_θ(x) − log q(x) − log ν (Gutmann & Hyvärinen 2010). The
loss is the binary cross-entropy averaged over the (1 + ν)·n examples; at its optimum
p_θ = p_data, so the model is self-normalised: exp(−E − c) integrates to about 1.

- ``nce``: q is a fixed Gaussian, fitted to the training set at build time or given.
- ``fce`` (flow contrastive estimation, Gao et al. 2020): q is a RealNVP flow trained
  adversarially on the same value function: the EBM minimises the cross-entropy, the flow
  maximises it (parameter groups ``energy`` and ``flow``), which approximately moves the
  flow towards the data by the Jensen–Shannon divergence. No MLE term for the flow, as in
  the paper. With ``accuracy_threshold`` the players alternate by the classifier's
  accuracy: a step trains the EBM while it is below the threshold, else the flow (the
  alternation of public FCE code, e.g. lifeitech/fce-2d, threshold 0.6); updating both
  every step (unset), a flow that sharpens faster than the EBM's log-density can follow
  wins outright (digits: accuracy 0.04 after 600 steps). The alternation stops training
  the EBM as soon as it barely beats the flow; with ``flow_frozen_after`` a last phase
  trains the EBM alone against the frozen flow (NCE with the learned flow as noise), so
  its density correction over the flow is learned to the end (eight Gaussians: MMD² of
  Langevin-revised flow samples 0.0194 before that phase, 0.0080 after it).

Sampling: NCE learns a density, not a sampler. ``nce`` draws by Langevin chains of the
recipe's sampler started from the noise q (the distribution the energy was contrasted
with, so the chains start where the model is known to be accurate). ``fce`` draws from
the flow, optionally revised by ``sample_steps`` Langevin steps under the energy.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm_nce.flow import RealNVP
from ebm_nce.noise import GaussianNoise
from ebmcore import Batch, Condition, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.likelihood import Referenced, dequantised
from ebmcore.kit.replicas import one_row_per_chain


def _only_with_gaussian(inst, attr, value):
    if inst.noise == "gaussian_fit" and value is not None:
        raise ValueError(f"is used only with noise = 'gaussian' (noise = 'gaussian_fit' fits it), got {value}")


def _needed_by_gaussian(inst, attr, value):
    _only_with_gaussian(inst, attr, value)
    if inst.noise == "gaussian" and value is None:
        raise ValueError("noise = 'gaussian' needs noise_std (or use noise = 'gaussian_fit')")
    if value is not None and not value > 0:
        raise ValueError(f"must be > 0, got {value}")


def _noise_ratio() -> object:
    return cfg.positive("ν, noise samples per data sample", default=1)


def _data_noise() -> object:
    return cfg.non_negative("std of Gaussian noise added to each data batch (modes no sharper than "
                            "Langevin resolves; the model then learns the smoothed data)", default=0.0)


@attrs.frozen
class NCEConfig:
    """Noise-contrastive estimation (Gutmann & Hyvärinen 2010) against a Gaussian; learned log Z."""

    noise: Literal["gaussian_fit", "gaussian"] = cfg.doc(
        "'gaussian_fit': mean and covariance of the training set (fitted once at build time); "
        "'gaussian': N(noise_mean, noise_std²) in every coordinate", default="gaussian_fit")
    noise_mean: float | None = attrs.field(default=None, validator=_only_with_gaussian,
                                           metadata={"doc": "noise = 'gaussian': mean (default 0)"})
    noise_std: float | None = attrs.field(default=None, validator=_needed_by_gaussian,
                                          metadata={"doc": "noise = 'gaussian': standard deviation (required)"})
    min_std: float = cfg.positive("noise = 'gaussian_fit': min_std² is added to the covariance's diagonal",
                                  default=0.1)
    noise_ratio: int = _noise_ratio()
    data_noise: float = _data_noise()
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "Langevin steps of samples after training, from the noise "
                         "(default: the sampler's n_steps)"})


@attrs.frozen
class FCEConfig:
    """Flow contrastive estimation (Gao et al. 2020): NCE against a RealNVP trained adversarially."""

    flow_layers: int = cfg.positive("affine coupling layers of the RealNVP (masks alternate)", default=8)
    flow_hidden: tuple[int, ...] = attrs.field(default=(64, 64), validator=cfg.positive_widths,
                                               metadata={"doc": "hidden widths of each coupling's MLP"})
    min_std: float = cfg.positive("floor of the per-coordinate data std that standardises the flow",
                                  default=0.1)
    noise_ratio: int = _noise_ratio()
    data_noise: float = _data_noise()
    sample_steps: int = cfg.non_negative("Langevin steps (the [sampler]) revising flow samples after "
                                         "training; 0: the flow's samples alone", default=0)
    accuracy_threshold: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([attrs.validators.ge(0), attrs.validators.le(1)]),
        metadata={"doc": "a step trains the EBM while the classifier's accuracy is below this, else the "
                         "flow (public FCE code: 0.6); unset: both every step"})
    flow_frozen_after: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
        metadata={"doc": "after this many updates only the EBM trains, against the frozen flow (NCE with "
                         "the learned flow as noise); unset: the players never stop"})


class SelfNormalised(nn.Module):
    """The energy and its learned log-normaliser c: log p(x) = −E(x) − c (one parameter group)."""

    def __init__(self, energy: nn.Module):
        super().__init__()
        self.energy = energy
        self.log_z = nn.Parameter(torch.zeros(()))


def contrast(log_ratio_data: Tensor, log_ratio_noise: Tensor, noise_ratio: int) -> tuple[Tensor, Tensor]:
    """(cross-entropy, accuracy) of the classifier h = log p − log q − log ν, data against noise."""
    shift = math.log(noise_ratio)
    h_data, h_noise = log_ratio_data - shift, log_ratio_noise - shift
    count = len(h_data) + len(h_noise)
    bce = (F.softplus(-h_data).sum() + F.softplus(h_noise).sum()) / count
    accuracy = ((h_data > 0).sum() + (h_noise < 0).sum()) / count
    return bce, accuracy


def _mean_over_ranks(x: Tensor) -> Tensor:
    """``x`` averaged over the processes of a distributed run, so that all ranks pick the
    same player (a group stepped on some ranks only would hang the gradient reduction)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    x = x.clone()
    torch.distributed.all_reduce(x)
    return x / torch.distributed.get_world_size()


class _Contrastive(Objective):
    name = ""

    def __init__(self, energy: nn.Module, *, noise_ratio: int, data_noise: float):
        super().__init__()
        if energy.condition is not Condition.NONE:
            raise ValueError(f"objective '{self.name}' learns unconditional energies; the energy is "
                             f"conditioned on '{energy.condition.value}'")
        self.model = SelfNormalised(energy)
        self.noise_ratio, self.data_noise = noise_ratio, data_noise

    @property
    def energy(self) -> nn.Module:
        return self.model.energy

    def _data(self, batch: Batch, rng) -> Tensor:
        x = batch.x
        if self.data_noise:
            x = x + self.data_noise * torch.randn(x.shape, generator=rng, device=x.device)
        return x

    def _classify(self, x: Tensor, log_q_data: Tensor, x_noise: Tensor, log_q_noise: Tensor):
        n = len(x)
        e = self.energy(torch.cat([x, x_noise]))
        log_p = -e - self.model.log_z
        bce, accuracy = contrast(log_p[:n] - log_q_data, log_p[n:] - log_q_noise, self.noise_ratio)
        return bce, {"loss/nce": bce.detach(), "nce/accuracy": accuracy.detach(),
                     "nce/log_z": self.model.log_z.detach().clone(),
                     "energy/data": e[:n].mean().detach(), "energy/noise": e[n:].mean().detach()}


class NoiseContrastive(_Contrastive):
    """``nce``: the EBM against a fixed Gaussian; samples by Langevin chains from that Gaussian."""

    name = "nce"

    def __init__(self, energy, sampler, noise: GaussianNoise, *, noise_ratio: int = 1,
                 data_noise: float = 0.0, sample_steps: int | None = None):
        super().__init__(energy, noise_ratio=noise_ratio, data_noise=data_noise)
        self.sampler, self.noise, self.sample_steps = sampler, noise, sample_steps

    @classmethod
    def from_config(cls, c: NCEConfig, ctx) -> NoiseContrastive:
        who = "objective 'nce'"
        energy, sampler = ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who)
        shape = ctx.need_event_shape(who)
        if c.noise == "gaussian_fit":
            data = ctx.require("data", f"{who} with noise = 'gaussian_fit'")
            noise = GaussianNoise.fit(data.dataset().x, c.min_std)
        else:
            noise = GaussianNoise.isotropic(shape, c.noise_mean or 0.0, c.noise_std)
        return cls(energy, sampler, noise.to(ctx.device), noise_ratio=c.noise_ratio,
                   data_noise=c.data_noise, sample_steps=c.sample_steps)

    def param_groups(self):
        return {"energy": self.model}

    def loss(self, batch: Batch, *, rng):
        x = self._data(batch, rng)
        x_noise = self.noise.sample(len(x) * self.noise_ratio, rng=rng)
        bce, metrics = self._classify(x, self.noise.log_prob(x), x_noise, self.noise.log_prob(x_noise))
        return {"energy": bce}, metrics

    def sample(self, n, *, rng, cond=None):
        x0 = self.noise.sample(n, rng=rng)
        return self.sampler.run(x0, self.energy, self.sample_steps, rng=rng)


class FlowContrastive(_Contrastive):
    """``fce``: the EBM against a RealNVP that learns to fool it; samples from the flow."""

    name = "fce"

    def __init__(self, energy, flow: RealNVP, sampler=None, *, noise_ratio: int = 1,
                 data_noise: float = 0.0, sample_steps: int = 0, accuracy_threshold: float | None = None,
                 flow_frozen_after: int | None = None):
        super().__init__(energy, noise_ratio=noise_ratio, data_noise=data_noise)
        if sample_steps and sampler is None:
            raise EbmError(f"objective 'fce' with sample_steps = {sample_steps} needs a [sampler] section "
                           "(or sample_steps = 0: the flow's samples alone)")
        self.flow, self.sampler, self.sample_steps = flow, sampler, sample_steps
        self.accuracy_threshold, self.flow_frozen_after = accuracy_threshold, flow_frozen_after
        if flow_frozen_after is not None:
            # counts loss() calls; a buffer, so checkpoints and exact resume keep the phase
            self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, c: FCEConfig, ctx) -> FlowContrastive:
        who = "objective 'fce'"
        data = ctx.require("data", who)  # the flow is standardised by the training set
        flow = RealNVP.fitted(data.dataset().x, c.flow_layers, c.flow_hidden, c.min_std)
        return cls(ctx.require("energy", who), flow.to(ctx.device), ctx.built.get("sampler"),
                   noise_ratio=c.noise_ratio, data_noise=c.data_noise, sample_steps=c.sample_steps,
                   accuracy_threshold=c.accuracy_threshold, flow_frozen_after=c.flow_frozen_after)

    def param_groups(self):
        # the flow's loss passes through the energy (its samples are scored by E): the runner
        # takes every group's gradient before stepping any, so the order does not matter
        return {"flow": self.flow, "energy": self.model}

    def loss(self, batch: Batch, *, rng):
        x = self._data(batch, rng)
        frozen = False
        if self.flow_frozen_after is not None:
            self.updates += 1
            # the alternation stops the EBM as soon as it barely beats the flow, so its
            # log-density over the flow stays weak; this last phase is NCE against the flow
            frozen = bool(self.updates > self.flow_frozen_after)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            x_noise, log_q_noise = self.flow.sample(len(x) * self.noise_ratio, rng=rng)
            log_q_data = self.flow.log_prob(x)
        bce, metrics = self._classify(x, log_q_data, x_noise, log_q_noise)
        metrics["flow/log_q_data"] = log_q_data.mean().detach()
        if frozen:
            return {"energy": bce}, metrics
        # one value function, two players: the EBM descends the cross-entropy, the flow ascends it
        if self.accuracy_threshold is None:
            return {"flow": -bce, "energy": bce}, metrics
        # the runner steps only the groups given a loss; reading the accuracy is a host sync
        if _mean_over_ranks(metrics["nce/accuracy"]).item() < self.accuracy_threshold:
            return {"energy": bce}, metrics
        return {"flow": -bce}, metrics

    def sample(self, n, *, rng, cond=None):
        with torch.no_grad():
            x, _ = self.flow.sample(n, rng=rng)
        if self.sample_steps:
            x = self.sampler.run(x, self.energy, self.sample_steps, rng=rng)
        return x


@attrs.frozen
class SNISConfig:
    """Maximum likelihood of q·exp(−g)/Z, negatives by self-normalised importance sampling from q."""

    proposals: int = cfg.positive("samples of the reference q per update, weighted by exp(−g)", default=1024)
    dequantize: float = cfg.non_negative(
        "width Δ of the data's quantisation bins: each data batch gets uniform noise on [−Δ/2, Δ/2] "
        "(0: off)", default=0.0)
    sample_proposals: int = cfg.positive("proposals per drawn sample (sampling-importance-resampling): "
                                         "many, so that few samples repeat", default=16)


class ImportanceMLE(Objective):
    """``snis_mle``: maximum likelihood of an energy that tilts a normalised reference
    (:class:`ebmcore.kit.likelihood.Referenced`, e.g. ``tilted_flow``): p = q·exp(−g)/Z.

    ∇ of the held-out negative log-likelihood is E_data[∇g] − E_p[∇g]; the second term is
    estimated from ``proposals`` samples of q weighted by w ∝ exp(−g), with no MCMC. Exact
    as the proposals grow, and cheap while p stays near q; the weights' effective sample
    size (``snis/ess``, a share of the proposals) says how near: when it falls to a few
    samples the estimate is noisy and learning stalls or degrades — stop there, or tilt less.
    Samples (``sample``) are drawn the same way: ``sample_proposals`` proposals per sample,
    resampled by their weights (sampling-importance-resampling).
    """

    def __init__(self, energy: nn.Module, event_shape: tuple[int, ...], *, proposals: int = 1024,
                 dequantize: float = 0.0, sample_proposals: int = 16):
        super().__init__()
        if not isinstance(energy, Referenced):
            raise EbmError(f"objective 'snis_mle' needs an energy that tilts a normalised reference "
                           f"(e.g. 'tilted_flow'); {type(energy).__name__} has none")
        self.energy, self.event_shape = energy, tuple(event_shape)
        self.proposals, self.dequantize, self.sample_proposals = proposals, dequantize, sample_proposals

    @classmethod
    def from_config(cls, c: SNISConfig, ctx) -> ImportanceMLE:
        who = "objective 'snis_mle'"
        return cls(ctx.require("energy", who), ctx.need_event_shape(who), proposals=c.proposals,
                   dequantize=c.dequantize, sample_proposals=c.sample_proposals)

    def param_groups(self):
        return {"energy": self.energy}

    def _proposals(self, n: int, rng) -> tuple[Tensor, Tensor]:
        """``n`` samples of q in the data's shape, and their normalised weights."""
        with torch.no_grad():
            x = self.energy.reference.sample(n, rng=rng).view(n, *self.event_shape)
            return x, torch.softmax(-self.energy.tilt(x).double(), 0).float()

    def loss(self, batch: Batch, *, rng):
        x = dequantised(batch.x, self.dequantize, rng)
        proposals, w = self._proposals(self.proposals, rng)
        g_data, g_model = self.energy.tilt(x), self.energy.tilt(proposals)
        loss = g_data.mean() - (w * g_model).sum()
        return {"energy": loss}, {"loss/mle": loss.detach(), "energy/data": g_data.mean().detach(),
                                  "energy/model": (w * g_model).sum().detach(),
                                  "snis/ess": 1 / (w.square().sum() * self.proposals)}

    def sample(self, n, *, rng, cond=None):
        x, w = self._proposals(n * self.sample_proposals, rng)
        return x[torch.multinomial(w, n, replacement=True, generator=rng)]
