"""Deep belief networks (Hinton, Osindero & Teh 2006): Bernoulli RBMs stacked greedily, layer
by layer, within one run of the ordinary runner; up-down generation; and the variational
lower bound on log p(v) of Salakhutdinov & Murray 2008.

The recipe's ``[energy]`` (an ``rbm``) is layer 1, over the data; objective ``dbn`` stacks
the RBMs of its ``hidden`` key on it, each one's visible units the hidden units of the one
below. Update t trains the layer that ``steps_per_layer`` gives for t, counted by a buffer
of the objective (``updates``), so a resumed run continues the right layer. Layer ℓ's data
are the training batch propagated up through the frozen layers below it, h ~ q(h | v) (or
its probabilities), and its negatives come from the recipe's sampler, run from persistent
chains of each layer held by the objective (PCD, checkpointed with it) or from the data (CD).
All layers are one parameter group: a layer that is not trained gets no gradient (None, not
zero), and torch's optimizers skip such parameters, so neither momentum nor weight decay
moves a frozen layer.

The model of an L-layer DBN is the top RBM's marginal p_L(h_{L−1}) ∝ exp(−F_L(h_{L−1})) with
directed layers p(h_{ℓ−1} | h_ℓ) = Bernoulli(σ(b_ℓ + W_ℓ h_ℓ)) below it (h₀ = v). With the
factorial posteriors q(h_ℓ | h_{ℓ−1}) = Bernoulli(σ(c_ℓ + W_ℓᵀ h_{ℓ−1})) of the RBMs,
log p(v) ≥ E_q[Σ_{ℓ<L} (log p(h_{ℓ−1} | h_ℓ) + H(q(· | h_{ℓ−1}))) − F_L(h_{L−1})] − log Z_L,
the entropies taken exactly given the layer below and the expectation over draws of h.
For L = 2 this is the bound of Salakhutdinov & Murray (2008, eq. 13).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm_rbm.energies import BernoulliRBM, BipartiteEnergy, RBMParams
from ebm_rbm.gibbs import Gibbs
from ebm_rbm.tasks import sweep_marks
from ebmcore import Batch, EbmError, Objective, Task
from ebmcore import config as cfg
from ebmcore.kernel import uniform_like
from ebmcore.kit.likelihood import BernoulliBase, Estimate
from ebmcore.kit.losses import maximum_likelihood_loss
from ebmcore.kit.pictures import image_grid_png
from ebmcore.kit.replicas import one_row_per_chain


def _layer_counts(instance: DBNConfig, _attr, value: tuple[int, ...]) -> None:
    layers = len(instance.hidden) + 1
    if len(value) not in (1, layers) or any(n < 1 for n in value):
        raise ValueError(f"must be one positive number of updates for every layer, or one for each of the "
                         f"{layers} layers (the [energy] RBM and the {len(instance.hidden)} of 'hidden'), "
                         f"got {list(value)}")


@attrs.frozen
class DBNConfig:
    """Deep belief network: RBMs stacked on the [energy] RBM, trained greedily in one run."""

    hidden: tuple[int, ...] = attrs.field(
        default=(500,), validator=cfg.positive_widths,
        metadata={"doc": "hidden units of the RBMs stacked on the [energy] RBM (layer 1), bottom to top"})
    steps_per_layer: tuple[int, ...] = attrs.field(
        default=(1000,), validator=_layer_counts,
        metadata={"doc": "updates of each layer in turn, bottom first: one number for every layer or one per "
                         "layer; the top layer goes on training after its share, to run.steps"})
    init_std: float = cfg.positive("standard deviation of the stacked RBMs' initial weights", default=0.01)
    negatives: Literal["persistent", "cd"] = cfg.doc(
        "where each layer's negative chains start: persistent chains of that layer kept by the objective "
        "(PCD, Tieleman 2008) or its data batch (CD)", default="persistent")
    chains: int = cfg.positive("persistent chains per layer (negatives = 'persistent')", default=100)
    propagate: Literal["sample", "probabilities"] = cfg.doc(
        "layer ℓ's data: draws of the hidden units of layer ℓ − 1 given the data, or their probabilities",
        default="sample")
    sample_steps: int = cfg.positive("up-down generation: Gibbs sweeps in the top RBM", default=1000)
    sample_start: Literal["bias", "noise"] = cfg.doc(
        "where generation's top chains start: Bernoulli(σ(b)) of the top RBM's visible bias, or "
        "Bernoulli(0.5)", default="bias")
    pixels: Literal["probabilities", "sample"] = cfg.doc(
        "the last step down to the data: P(v = 1 | h₁) (pictures) or a draw of v", default="probabilities")


class DeepBeliefNet(Objective):
    """A stack of Bernoulli RBMs, ``layers[0]`` over the data, trained one layer at a time."""

    def __init__(self, layers: list[BernoulliRBM], sampler, event_shape: tuple[int, ...], config: DBNConfig):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.sampler, self.event_shape, self.c = sampler, tuple(event_shape), config
        counts = config.steps_per_layer * len(layers) if len(config.steps_per_layer) == 1 else config.steps_per_layer
        #: the update at which each layer but the top stops training
        self.ends = list(itertools.accumulate(counts))[:-1]
        #: updates made so far (checkpointed: it decides which layer trains)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        if config.negatives == "persistent":  # drawn at initialisation from the seeded global RNG, like W
            for i, rbm in enumerate(layers):
                start = torch.bernoulli(torch.sigmoid(rbm.visible_bias.detach()).expand(config.chains, -1))
                self.register_buffer(f"chains{i + 1}", start)

    @classmethod
    def from_config(cls, c: DBNConfig, ctx) -> DeepBeliefNet:
        who = "objective 'dbn'"
        energy, sampler = ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who)
        if not isinstance(energy, BernoulliRBM):
            raise EbmError(f"{who} stacks Bernoulli RBMs on the [energy] section, which must be an 'rbm' "
                           f"(layer 1); got {type(energy).__name__}")
        if "generator" in ctx.built:
            raise EbmError(f"{who} keeps its own chains per layer (objective.negatives); remove the [generator] "
                           "section")
        if c.negatives == "persistent" and isinstance(sampler, Gibbs) and sampler.config.probabilities:
            raise EbmError(f"{who}: persistent chains must stay draws; sampler.probabilities = true would store "
                           "probabilities in them (use it with negatives = 'cd' only)")
        layers = [energy]
        for n_hidden in c.hidden:
            layers.append(BernoulliRBM(layers[-1].n_hidden, n_hidden, init_std=c.init_std))
        return cls(layers, sampler, ctx.need_event_shape(who), c)

    def layer_at(self, update: int) -> int:
        """The index (0 = the [energy] RBM) of the layer that update ``update`` (from 0) trains."""
        return sum(update >= end for end in self.ends)

    def param_groups(self):
        return {"layers": self.layers}

    def up(self, v: Tensor, top: int, rng: torch.Generator) -> Tensor:
        """Flat ``v`` propagated up through layers 0 … ``top`` − 1 (draws or probabilities)."""
        with torch.no_grad():
            for rbm in self.layers[:top]:
                v = rbm.sample_hidden(v, rng) if self.c.propagate == "sample" else rbm.hidden_probs(v)
        return v

    def loss(self, batch: Batch, *, rng):
        layer = self.layer_at(int(self.updates))
        self.updates += 1
        rbm = self.layers[layer]
        x_pos = self.up(batch.x.flatten(1), layer, rng)
        if self.c.negatives == "persistent":
            chains = self.get_buffer(f"chains{layer + 1}")
            x_neg = self.sampler.run(chains, rbm, rng=rng)
            chains.copy_(x_neg)
        else:
            x_neg = self.sampler.run(x_pos, rbm, rng=rng)
        loss, metrics = maximum_likelihood_loss(rbm, x_pos, x_neg)
        metrics["dbn/layer"] = torch.tensor(float(layer + 1), device=loss.device)
        return {"layers": loss}, metrics

    def down(self, h: Tensor, rng: torch.Generator) -> Tensor:
        """The top RBM's visible units ``h`` taken down the directed layers to the data, shaped
        as the data (the last step P(v = 1 | h₁) or a draw, by ``pixels``)."""
        with torch.no_grad():
            for rbm in reversed(self.layers[1:-1]):
                h = rbm.sample_visible(h, rng)
            first = self.layers[0]
            eta = first.visible_eta(h)
            v = first.visible_mean(eta) if self.c.pixels == "probabilities" else first.sample_visible_from(eta, rng)
        return v.reshape(len(v), *self.event_shape)

    def top_start(self, n: int, rng: torch.Generator) -> Tensor:
        """Starting points of the top RBM's chains (its visible units), by ``sample_start``."""
        bias = self.layers[-1].visible_bias.detach()
        probs = torch.sigmoid(bias) if self.c.sample_start == "bias" else torch.full_like(bias, 0.5)
        return (uniform_like(probs.expand(n, -1), rng) < probs).to(bias.dtype)

    def sample(self, n, *, rng, cond=None):
        h = self.sampler.run(self.top_start(n, rng), self.layers[-1], self.c.sample_steps, rng=rng)
        return self.down(h, rng)


# -- the variational bound ----------------------------------------------------------------------


def _double(rbm: BipartiteEnergy) -> RBMParams:
    return rbm.params()._make(t.detach().double() for t in rbm.params())


def bound_draw(layers: list[BernoulliRBM], v: Tensor, rng: torch.Generator) -> Tensor:
    """One Monte Carlo draw per example of the bound's integrand without −log Z_L, in float64:
    h_ℓ ~ q(h_ℓ | h_{ℓ−1}) up the stack from h₀ = ``v`` (flat), summing log p(h_{ℓ−1} | h_ℓ)
    and the entropy of q(· | h_{ℓ−1}) over the layers below the top, then −F_L(h_{L−1})."""
    with torch.no_grad():
        below = v.flatten(1).double()
        total = torch.zeros(len(below), dtype=torch.float64, device=below.device)
        for rbm in layers[:-1]:
            p = _double(rbm)
            logits = below @ p.weight + p.hidden_bias
            probs = torch.sigmoid(logits)
            h = (uniform_like(probs, rng) < probs).double()
            entropy = (F.softplus(logits) - probs * logits).sum(-1)
            eta = rbm.visible_eta(h, p)
            log_directed = (below * eta).sum(-1) - rbm.visible_base(below) - rbm.log_normaliser(eta)
            total += log_directed + entropy
            below = h
        return total - layers[-1].free_energy(below, _double(layers[-1]))


@attrs.frozen
class BoundConfig:
    """A deep belief network's variational lower bound on held-out log p(v), log Z of its top RBM by AIS."""

    examples: int = cfg.non_negative("held-out examples scored (0: all of them)", default=0)
    samples: int = cfg.positive("draws of the hidden layers from q(h | v) per example", default=10)
    chains: int = cfg.positive("AIS chains for each log Z", default=100)
    betas: int = attrs.field(default=1000, validator=attrs.validators.ge(3),
                             metadata={"doc": "steps of β of each AIS run (Salakhutdinov & Murray's schedule "
                                              "scaled; 14500 is theirs)"})
    first_layer: bool = cfg.doc("also the held-out log-likelihood of the first RBM alone (a second AIS run)",
                                default=True)
    show: int = cfg.non_negative("chains drawn in updown.png, generation over the top RBM's sweeps (0: no "
                                 "picture)", default=10)


class Bound(Task):
    """``dbn/bound_nats``: the mean over held-out examples of the variational lower bound on
    log p(v) in nats, log Z of the top RBM by AIS; beside it the Monte Carlo standard error over
    q (``dbn/bound_se``), the AIS estimate's (``dbn/log_z_se``) and ESS, the bound with exact
    log Z where the top RBM is small enough to enumerate, the first RBM alone
    (``rbm1/nats``), and the yardsticks of binary data (``nats/bernoulli``, ``nats/uniform``)."""

    def __init__(self, config: BoundConfig):
        self.c = config

    @classmethod
    def from_config(cls, c: BoundConfig, ctx) -> Bound:
        objective = ctx.require("objective", "task 'dbn_bound'")
        if not isinstance(objective, DeepBeliefNet):
            raise EbmError(f"task 'dbn_bound' bounds a deep belief network's log-likelihood; the objective is a "
                           f"{type(objective).__name__}, not 'dbn'")
        return cls(c)

    def run(self, objective, data, *, rng: torch.Generator, out: Path) -> dict[str, float]:
        heldout = data.heldout()
        if heldout is None:
            raise EbmError("task 'dbn_bound' needs held-out data, and this data set has none")
        layers = list(objective.layers)
        device = layers[0].weight.device
        train = data.dataset().x.flatten(1).to(device)
        x = (heldout.x if not self.c.examples else heldout.x[:self.c.examples]).flatten(1).to(device)
        metrics = bound_metrics(layers, x, train, samples=self.c.samples, chains=self.c.chains,
                                betas=self.c.betas, first_layer=self.c.first_layer, rng=rng)
        if self.c.show:
            updown_png(objective, self.c.show, rng, out / "updown.png")
        return metrics


def bound_metrics(layers: list[BernoulliRBM], x: Tensor, train: Tensor, *, samples: int, chains: int, betas: int,
                  first_layer: bool, rng: torch.Generator) -> dict[str, float]:
    """The task's metrics for held-out ``x`` (flat, binary), ``train`` the training set."""
    draws = torch.stack([bound_draw(layers, x, rng) for _ in range(samples)])  # (samples, examples)
    per_example = draws.mean(0)
    # the Monte Carlo error of the mean over examples, given the examples
    mc_se = float(draws.var(0, correction=1).sum().sqrt() / (math.sqrt(samples) * len(x))) if samples > 1 \
        else math.nan
    metrics: dict[str, float] = {"dbn/bound_se": mc_se}
    # log Z of the top RBM: AIS from the base rates of the training set carried up to its visible units
    top_data = train
    for rbm in layers[:-1]:
        top_data = rbm.hidden_probs(top_data).detach()
    metrics.update(_scored("dbn", "bound_nats", per_example, layers[-1].log_partition(
        top_data, chains=chains, betas=betas, rng=rng)))
    if first_layer:
        with torch.no_grad():
            minus_f = -layers[0].free_energy(x.double(), _double(layers[0]))
        metrics.update(_scored("rbm1", "nats", minus_f, layers[0].log_partition(
            train, chains=chains, betas=betas, rng=rng)))
    dims = x.shape[1]
    for name, model in (("bernoulli", BernoulliBase.fit(train)), ("uniform", BernoulliBase(torch.zeros(dims)))):
        metrics[f"nats/{name}"] = float(-model.to(x.device)(x.double()).mean())
    return metrics


def _scored(prefix: str, name: str, unnormalised: Tensor, log_zs: dict[str, float | Estimate]) -> dict[str, float]:
    """``<prefix>/<name>``: the mean over examples of ``unnormalised`` − log Z by AIS, with that
    estimate's ``log_z``, ``log_z_se`` and ``ess``; and ``<name>_exact`` where log Z was enumerated."""
    ais, mean = log_zs["ais"], float(unnormalised.mean())
    out = {f"{prefix}/{name}": mean - ais.log_z, f"{prefix}/log_z": ais.log_z,
           f"{prefix}/log_z_se": ais.std_error, f"{prefix}/ess": ais.ess}
    if "exact" in log_zs:
        out |= {f"{prefix}/{name}_exact": mean - log_zs["exact"], f"{prefix}/log_z_exact": log_zs["exact"]}
    return out


def updown_png(dbn: DeepBeliefNet, n: int, rng: torch.Generator, path: Path) -> None:
    """Generation over time: row i is chain i, taken down to the data after 0, 1, 3, 10, 30, …
    sweeps of the top RBM (up to ``sample_steps``); 1-channel or RGB image data only."""
    if len(dbn.event_shape) != 3:
        return
    marks = sweep_marks(dbn.c.sample_steps)
    h = dbn.top_start(n, rng)
    frames = [dbn.down(h, rng)]
    for previous, mark in itertools.pairwise(marks):
        h = dbn.sampler.run(h, dbn.layers[-1], mark - previous, rng=rng)
        frames.append(dbn.down(h, rng))
    grid = torch.stack(frames, 1).flatten(0, 1)  # chain-major: one row per chain
    image_grid_png(grid * 2 - 1, path, columns=len(frames), limit=len(grid))
