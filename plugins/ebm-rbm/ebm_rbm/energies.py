"""Restricted Boltzmann machines as energies over the visible units: their free energy.

The joint energy of visible v ∈ ℝ^D (or {0, 1}^D) and binary hidden h ∈ {0, 1}^H is
E(v, h) = s(v) − bᵀv − vᵀWh − cᵀh. Summing h out gives the free energy
F(v) = s(v) − bᵀv − Σⱼ softplus(cⱼ + (vᵀW)ⱼ), which is what ``forward`` returns, so every
sampler and objective sees an ordinary energy. The visible units are an exponential family
with natural parameter η: v | h has η = b + Wh, and A(η) = log Σ_v exp(ηᵀv − s(v)) is its
log-normaliser.

- ``rbm``: Bernoulli visible units, s(v) = 0, A(η) = Σ softplus(η), v | h ~ Bernoulli(σ(η)).
- ``gaussian_rbm``: Gaussian visible units of unit variance, s(v) = ‖v‖²/2,
  A(η) = ‖η‖²/2 + (D/2)·log 2π, v | h ~ N(η, I). (F equals ‖v − b‖²/2 − Σ softplus(…) up
  to a constant; data should be scaled to about unit variance per pixel.)

:class:`BipartiteEnergy` is the interface the Gibbs sampler and the partition-function
estimators use; :class:`RBMParams` are the weights of one RBM, so that the intermediate
RBMs of the exact sum are parameters, not modules.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar, NamedTuple

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm_rbm.partition import (
    ais_log_partition,
    enumerable,
    exact_log_partition,
    rbm_betas,
)
from ebmcore import EbmError, Energy
from ebmcore import config as cfg
from ebmcore.kernel import normal_like, uniform_like
from ebmcore.kit.likelihood import BernoulliBase, Estimate, PartitionEstimator
from ebmcore.kit.memory import check_fits, tensor_bytes


class RBMParams(NamedTuple):
    """An RBM's weights W (D, H), visible bias b (D,) and hidden bias c (H,)."""

    weight: Tensor
    visible_bias: Tensor
    hidden_bias: Tensor


class BipartiteEnergy(Energy, PartitionEstimator):
    """An RBM: the free energy of a bipartite joint with binary hidden units.

    A subclass chooses the visible units' family: :meth:`visible_base` s(v),
    :meth:`visible_mean`, :meth:`sample_visible_from` and :meth:`log_normaliser` of the
    natural parameter η. Everything else (free energy, conditionals, log Z) follows here.
    Visible tensors are flat (batch, D); ``forward`` flattens image-shaped batches.
    """

    #: the name it is registered under, for messages
    registered_name: ClassVar[str]

    def __init__(self, n_visible: int, n_hidden: int, *, init_std: float = 0.01,
                 visible_bias: Tensor | None = None):
        super().__init__()
        self.n_visible, self.n_hidden = n_visible, n_hidden
        # Hinton's practical guide: small random weights, zero hidden biases
        self.weight = nn.Parameter(torch.randn(n_visible, n_hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible) if visible_bias is None
                                         else visible_bias.detach().float().clone())
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    @classmethod
    def from_config(cls, c: RBMConfig, ctx) -> BipartiteEnergy:
        name = cls.registered_name
        shape = ctx.need_event_shape(f"energy '{name}'")
        d = math.prod(shape)
        n = d * c.hidden + d + c.hidden
        # training holds each parameter four times: the value, its gradient and an optimizer's two moments
        check_fits("$.energy.hidden", 4 * tensor_bytes(n),
                   what=f"{n:,} float32 parameters, each with its gradient and an optimizer's two moments")
        bias = None
        if c.data_bias:
            train = ctx.require("data", f"energy '{name}' (data_bias = true)").dataset().x.flatten(1)
            if cls.binary and not bool(((train == 0) | (train == 1)).all()):
                raise EbmError(f"energy '{name}' has binary visible units, but the data are not all 0 or 1: "
                               "binarise them (data.binarize = 'threshold' or 'stochastic')")
            bias = cls.visible_fit(train)
        return cls(d, c.hidden, init_std=c.init_std, visible_bias=bias)

    @classmethod
    @abc.abstractmethod
    def visible_fit(cls, train: Tensor) -> Tensor:
        """η of the visible family fitted to the rows of flat ``train`` (W = 0, c = 0): the
        initial visible bias and the base of AIS."""

    @abc.abstractmethod
    def visible_base(self, v: Tensor) -> Tensor:
        """s(v) per example."""

    @abc.abstractmethod
    def visible_mean(self, eta: Tensor, beta: Tensor | None = None) -> Tensor:
        """E[v | h] at ``eta`` = b + Wh (batch, D), of the joint scaled by ``beta`` (batch, 1)
        where given."""

    @abc.abstractmethod
    def sample_visible_from(self, eta: Tensor, rng: torch.Generator, beta: Tensor | None = None) -> Tensor:
        """A draw of v | h at ``eta`` = b + Wh, of the joint scaled by ``beta`` where given."""

    @abc.abstractmethod
    def log_normaliser(self, eta: Tensor) -> Tensor:
        """A(η) = log Σ_v exp(ηᵀv − s(v)) over the last dimension."""

    def params(self) -> RBMParams:
        return RBMParams(self.weight, self.visible_bias, self.hidden_bias)

    def free_energy(self, v: Tensor, p: RBMParams | None = None, beta: Tensor | None = None) -> Tensor:
        """F(v) of flat ``v`` under ``p`` (default: this RBM's weights); with ``beta`` (batch, 1)
        the free energy of the joint β·E(v, h): β(s(v) − bᵀv) − Σⱼ softplus(β(cⱼ + (vᵀW)ⱼ))."""
        p = p or self.params()
        visible = self.visible_base(v) - v @ p.visible_bias
        hidden = v @ p.weight + p.hidden_bias
        if beta is not None:
            visible, hidden = visible * beta[:, 0], hidden * beta
        return visible - F.softplus(hidden).sum(-1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.free_energy(x.flatten(1))

    def tempered(self, temperature: Tensor) -> TemperedRBM:
        """The joint E(v, h)/T, again an RBM (W, b, c divided by T, a Gaussian's variance
        multiplied by T), so Gibbs samples every temperature exactly."""
        return TemperedRBM(self, 1 / temperature)

    def hidden_probs(self, v: Tensor, p: RBMParams | None = None, beta: Tensor | None = None) -> Tensor:
        """P(hⱼ = 1 | v) = σ(cⱼ + (vᵀW)ⱼ), (batch, H); σ(β(…)) with ``beta`` (batch, 1)."""
        p = p or self.params()
        logits = v @ p.weight + p.hidden_bias
        return torch.sigmoid(logits if beta is None else logits * beta)

    def visible_eta(self, h: Tensor, p: RBMParams | None = None) -> Tensor:
        """η = b + Wh of v | h, (batch, D)."""
        p = p or self.params()
        return p.visible_bias + h @ p.weight.T

    def sample_hidden(self, v: Tensor, rng: torch.Generator, p: RBMParams | None = None,
                      beta: Tensor | None = None) -> Tensor:
        probs = self.hidden_probs(v, p, beta)
        return (uniform_like(probs, rng) < probs).to(probs.dtype)

    def sample_visible(self, h: Tensor, rng: torch.Generator, p: RBMParams | None = None) -> Tensor:
        return self.sample_visible_from(self.visible_eta(h, p), rng)

    def log_partition(self, train: Tensor, *, chains: int, betas: int,
                      rng: torch.Generator) -> dict[str, float | Estimate]:
        """Exact log Z where the smaller layer has at most 20 units, and AIS from the
        base-rate model of ``train`` (:mod:`ebm_rbm.partition`)."""
        out: dict[str, float | Estimate] = {}
        if enumerable(self):
            out["exact"] = exact_log_partition(self)
        base = self.visible_fit(train.flatten(1).to(self.weight.device))
        out["ais"] = ais_log_partition(self, base, chains=chains, betas=rbm_betas(betas), rng=rng)
        return out


class TemperedRBM(nn.Module):
    """An RBM at an inverse temperature β per example: the free energy of β·E(v, h), whose
    conditionals :class:`~ebm_rbm.gibbs.Gibbs` draws (parallel tempering's replicas)."""

    def __init__(self, rbm: BipartiteEnergy, beta: Tensor):
        super().__init__()
        self.rbm, self.beta = rbm, beta[:, None]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.rbm.free_energy(x.flatten(1), beta=self.beta)


class BernoulliRBM(BipartiteEnergy):
    """Bernoulli–Bernoulli RBM."""

    binary = True
    registered_name = "rbm"

    @classmethod
    def visible_fit(cls, train: Tensor) -> Tensor:
        # Hinton's guide: log p/(1 − p) of each unit's frequency p (smoothed: constant pixels stay finite)
        return BernoulliBase.fit(train).logits

    def visible_base(self, v: Tensor) -> Tensor:
        return v.new_zeros(v.shape[:-1])

    def visible_mean(self, eta: Tensor, beta: Tensor | None = None) -> Tensor:
        return torch.sigmoid(eta if beta is None else eta * beta)

    def sample_visible_from(self, eta: Tensor, rng: torch.Generator, beta: Tensor | None = None) -> Tensor:
        probs = self.visible_mean(eta, beta)
        return (uniform_like(probs, rng) < probs).to(probs.dtype)

    def log_normaliser(self, eta: Tensor) -> Tensor:
        return F.softplus(eta).sum(-1)


class GaussianRBM(BipartiteEnergy):
    """Gaussian–Bernoulli RBM with unit visible variance."""

    registered_name = "gaussian_rbm"

    @classmethod
    def visible_fit(cls, train: Tensor) -> Tensor:
        return train.double().mean(0)

    def visible_base(self, v: Tensor) -> Tensor:
        return 0.5 * v.square().sum(-1)

    def visible_mean(self, eta: Tensor, beta: Tensor | None = None) -> Tensor:
        return eta

    def sample_visible_from(self, eta: Tensor, rng: torch.Generator, beta: Tensor | None = None) -> Tensor:
        noise = normal_like(eta, rng)
        return eta + (noise if beta is None else noise * beta.rsqrt())

    def log_normaliser(self, eta: Tensor) -> Tensor:
        return 0.5 * eta.square().sum(-1) + 0.5 * eta.shape[-1] * math.log(2 * math.pi)


@attrs.frozen
class RBMConfig:
    """Restricted Boltzmann machine over the flattened data: its free energy."""

    hidden: int = cfg.positive("hidden units H", default=64)
    init_std: float = cfg.positive("standard deviation of the initial weights W ~ N(0, σ²) (Hinton's "
                                   "practical guide: 0.01)", default=0.01)
    data_bias: bool = cfg.doc("initial visible biases from the training set (Bernoulli: log p/(1 − p) of each "
                              "unit's frequency p; Gaussian: each pixel's mean); false: zero", default=True)
