"""A RealNVP tilted by an energy: E(x) = −log q(x) + g(x), the model q(x)·exp(−g(x))/Z.

The flow q is trained by maximum likelihood on the training set when the energy is built
(``flow_steps`` Adam steps on batches dequantised like the objective's), then frozen; the
tilt g is any registered energy (``tilt``, ``tilt_options``), trained by the run. The model
starts near the flow, and a normalised, samplable q makes both learning and log Z cheap:
``snis_mle`` draws its negatives from q and weighs them by exp(−g), and the ``loglik`` task
(``base = "reference"``) anneals only g along its path. A flow, fast to fit and exact in
likelihood, learns the bulk of the density; the energy corrects it where a flow's
triangular maps cannot (the residual/tilted EBMs of Nijkamp et al. 2022, Xiao et al. 2021).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from ebm_nce.flow import RealNVP
from ebmcore import Condition, Energy
from ebmcore import config as cfg
from ebmcore.kit.likelihood import Referenced, dequantised


@attrs.frozen
class TiltedFlowConfig:
    """E(x) = −log q(x) + g(x): a RealNVP q fitted at build time, tilted by a registered energy g."""

    tilt: str = cfg.doc("the registered energy g that tilts the flow (built with tilt_options)", default="mlp")
    tilt_options: dict[str, Any] = attrs.field(
        factory=dict, metadata={"doc": "g's settings (keys of its own [energy] section), e.g. {hidden = [256, 256]}"})
    flow_layers: int = cfg.positive("affine coupling layers of the RealNVP", default=8)
    flow_hidden: tuple[int, ...] = attrs.field(default=(256, 256), validator=cfg.positive_widths,
                                               metadata={"doc": "hidden widths of each coupling's MLP"})
    min_std: float = cfg.positive("floor of the per-coordinate data std that standardises the flow", default=0.1)
    flow_steps: int = cfg.non_negative("Adam steps of maximum likelihood fitting the flow at build time "
                                       "(0: the diagonal Gaussian it starts as)", default=400)
    flow_lr: float = cfg.positive("the flow's Adam learning rate", default=1e-3)
    flow_batch: int = cfg.positive("training examples per flow step", default=128)
    dequantize: float = cfg.non_negative("width of the bins the flow's batches are dequantised across "
                                         "(the objective's dequantize; 0: continuous data)", default=0.0)
    seed: int = cfg.non_negative("seed of the flow's initial weights and of its fitting (batches, noise)",
                                 default=0)


class FlowReference(nn.Module):
    """A frozen flow as an AIS base on flat vectors: ``sample`` and −log q(x)."""

    def __init__(self, flow: RealNVP):
        super().__init__()
        self.flow = flow

    def sample(self, n: int, *, rng: torch.Generator) -> Tensor:
        with torch.no_grad():
            return self.flow.sample(n, rng=rng)[0].flatten(1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.flow.log_prob(x)


class TiltedFlow(Energy, Referenced):
    """E(x) = −log q(x) + g(x), q a frozen RealNVP (:class:`FlowReference`)."""

    def __init__(self, flow: RealNVP, tilt: nn.Module):
        super().__init__()
        if tilt.condition is not Condition.NONE:
            raise ValueError(f"energy 'tilted_flow': the tilt must be unconditional, it is conditioned on "
                             f"'{tilt.condition.value}'")
        self.q = FlowReference(flow.requires_grad_(False))
        self.g = tilt

    @classmethod
    def from_config(cls, c: TiltedFlowConfig, ctx) -> TiltedFlow:
        who = "energy 'tilted_flow'"
        x = ctx.require("data", who).dataset().x
        options = cfg.structured(dict(c.tilt_options), ctx.registry.get("energy", c.tilt).config,
                                 f"tilt_options (tilt '{c.tilt}')")
        tilt = ctx.make("energy", c.tilt, options)
        with torch.random.fork_rng(devices=[]):  # the flow depends on its seed alone, not on the tilt
            torch.manual_seed(c.seed)
            flow = RealNVP.fitted(x, c.flow_layers, c.flow_hidden, c.min_std)
        flow = fit_flow(flow, x, steps=c.flow_steps, lr=c.flow_lr, batch=c.flow_batch, bin_width=c.dequantize,
                        seed=c.seed)
        return cls(flow, tilt).to(ctx.device)

    @property
    def reference(self) -> FlowReference:
        return self.q

    def tilt(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.g(x)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.q(x) + self.g(x)


def fit_flow(flow: RealNVP, x: Tensor, *, steps: int, lr: float, batch: int, bin_width: float,
             seed: int) -> RealNVP:
    """``flow`` after ``steps`` Adam steps of maximum likelihood on random batches of ``x``,
    each dequantised by uniform noise across bins of ``bin_width``, drawn from ``seed``: the
    same initial flow (a run seeds the weights it builds) fits to the same flow."""
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            b = dequantised(x[torch.randint(len(x), (batch,), generator=rng)], bin_width, rng)
            loss = -flow.log_prob(b).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return flow.eval()
