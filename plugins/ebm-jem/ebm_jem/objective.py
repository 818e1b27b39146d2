"""JEM (Grathwohl et al. 2020): a classifier's logits f(x) read as an energy.

E(x, y) = −f(x)[y] and E(x) = −logsumexp_y f(x)[y]; a label-conditional image energy
(``condition = "label"``) is exactly this, its head's outputs being −f(x). The loss is

    cross-entropy  +  w · [E(x_data) − E(x_sample)  +  α · (E(x_data)² + E(x_sample)²)]

(each term a mean over its own examples) with x_sample from SGLD on E(x) started from the
generator (a replay buffer, 5 % fresh noise, in JEM; ``chains`` of them per update). w = 0
is the plain classifier: the same network, data and optimiser, no chains run.

The cross-entropy is taken through the energy's own two answers, without reaching into
its head: −log p(y | x) = −f(x)[y] + logsumexp_y f(x)[y] = E(x, y) − E(x).
"""

from typing import Literal

import attrs
import torch
from torch import Tensor

from ebmcore import Batch, Condition, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain

WHO = "objective 'jem'"


@attrs.frozen
class JEMConfig:
    """JEM: cross-entropy plus w × maximum likelihood of E(x) = −logsumexp f(x) by SGLD samples."""

    generative_weight: float = cfg.non_negative(
        "w, the weight of the maximum-likelihood term on E(x) (1 in JEM; 0: the plain classifier, no chains)",
        default=1.0)
    alpha: float = cfg.non_negative(
        "weight of the energy-magnitude term α·(E(x_data)² + E(x_sample)²), inside w (JEM's stability fix)",
        default=0.0)
    chains: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "SGLD chains per update, the samples of the maximum-likelihood term (default: the "
                         "batch size; fewer make an update cheaper, the term's estimate noisier)"})
    sample_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "chain length of evaluation chains (default: the sampler's n_steps)"})
    eval_chains: Literal["fresh", "persistent"] = cfg.doc(
        "evaluation chains start from fresh noise, or continue chains drawn from the generator "
        "(a replay buffer; conditional samples then run E(x, y) from buffer points)", default="fresh")


class JEM(Objective):
    def __init__(self, energy, sampler, generator, *, generative_weight: float = 1.0, alpha: float = 0.0,
                 chains: int | None = None, sample_steps: int | None = None, eval_chains: str = "fresh"):
        super().__init__()
        if energy.condition is not Condition.LABEL:
            raise EbmError(f"{WHO} reads the energy's class outputs as logits: set energy.condition = \"label\" "
                           f"(the energy's condition is {energy.condition.value!r})")
        self.energy, self.generator, self.sampler = energy, generator, one_row_per_chain(sampler, WHO)
        self.generative_weight, self.alpha, self.chains = generative_weight, alpha, chains
        self.sample_steps, self.eval_chains = sample_steps, eval_chains

    @classmethod
    def from_config(cls, c: JEMConfig, ctx) -> "JEM":
        data = ctx.require("data", WHO)
        if not data.conditional:
            # without labels in the batches there is no cross-entropy to train
            raise EbmError(f"{WHO} trains on labelled batches: set data.conditional = true")
        return cls(ctx.require("energy", WHO), ctx.require("sampler", WHO), ctx.require("generator", WHO),
                   generative_weight=c.generative_weight, alpha=c.alpha, chains=c.chains,
                   sample_steps=c.sample_steps, eval_chains=c.eval_chains)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x, y = batch
        if y is None:
            raise EbmError(f"{WHO} got a batch without labels: set data.conditional = true")
        e_joint = self.energy(x, y)
        e_data = self.energy(x)
        ce = (e_joint - e_data).mean()
        metrics = {"loss/ce": ce.detach(), "energy/data": e_data.mean().detach()}
        if not self.generative_weight:
            return {"energy": ce}, metrics
        x0 = self.generator.sample(self.chains or len(x), rng=rng, data=x)
        x_neg = self.sampler.run(x0, self.energy, rng=rng)  # SGLD on the marginal E(x)
        self.generator.update(x_neg)
        e_neg = self.energy(x_neg)
        cd = e_data.mean() - e_neg.mean()
        generative = cd + self.alpha * (e_data.pow(2).mean() + e_neg.pow(2).mean()) if self.alpha else cd
        metrics.update({"loss/cd": cd.detach(), "energy/sample": e_neg.mean().detach()})
        return {"energy": ce + self.generative_weight * generative}, metrics

    def sample(self, n, *, rng, cond: Tensor | None = None):
        """Samples of p(x) (``cond`` None) or of p(x | y) (``cond`` the labels y) by SGLD."""
        if self.eval_chains == "persistent":  # reads the buffer, never writes it
            x0 = self.generator.sample(n, rng=rng, cond=cond)
        else:
            x0 = self.generator.fresh(n, rng=rng, cond=cond)
        return self.sampler.run(x0, self.energy, self.sample_steps, rng=rng, cond=cond)


def class_energies(energy, x: Tensor, num_classes: int) -> Tensor:
    """E(x, y) for every class y, ``(batch, num_classes)``: the logits are its negative.
    One call of the energy on x repeated once per class (a label-conditional energy
    answers one label per example)."""
    n = len(x)
    labels = torch.arange(num_classes, device=x.device).repeat_interleave(n)
    return energy(x.repeat(num_classes, *(1,) * (x.dim() - 1)), labels).view(num_classes, n).T
