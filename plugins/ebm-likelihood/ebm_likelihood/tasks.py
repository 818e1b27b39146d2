"""The ``loglik`` task: held-out log-likelihood of a trained energy, log Z by annealed
importance sampling from both sides.

log p(x) = −E(x) − log Z needs log Z. Forward AIS (:func:`ebmcore.kit.likelihood.ais`)
estimates it from below on average, so the log-likelihood it gives is optimistic; reverse
AIS (:func:`~ebmcore.kit.likelihood.reverse_ais`), run from the forward chains' ends after
``settle_steps`` more steps at the target, estimates it from above as far as those chains
have converged, so its log-likelihood is conservative. Both are reported; the truth lies
between them when both are sound. For 2-D data, ``quadrature`` adds log Z summed on a grid,
the exact answer up to the grid's resolution and the box's mass. An energy that estimates
its own log Z (an :class:`ebmcore.kit.likelihood.PartitionEstimator`: an RBM enumerates
or anneals along its own path) is asked for its estimates instead; when it is a probability
mass on binary vectors its yardsticks are masses too (independent Bernoulli units fitted to
the training set, and the uniform mass on {0, 1}^D).

Quantised data (images with a few grey levels) is scored as a density of the data
dequantised by uniform noise across each bin of width Δ (``bin_width``): log P(x) ≥
E_u log p(x + Δ·(u − ½)) + D·log Δ, reported in bits per dimension (lower is better).

Every number stands beside its yardsticks, scored the same way on the same points: a
Gaussian fitted to the training set (the simplest fitted model; a learned density that
does not beat it has not learned) and the uniform density on the training set's bounding
box (noise); with ``base = "reference"`` also the energy's reference alone (a tilted flow's
flow: what the tilt adds).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor, nn

from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.files import write_via
from ebmcore.kit.likelihood import (
    BernoulliBase,
    Estimate,
    GaussianBase,
    PartitionEstimator,
    Referenced,
    UniformBase,
    ais,
    dequantised,
    geometric_betas,
    reverse_ais,
)


@attrs.frozen
class LogLikConfig:
    """Held-out log-likelihood by forward and reverse annealed importance sampling."""

    examples: int = cfg.non_negative("held-out examples scored (0: all of them)", default=0)
    chains: int = cfg.positive("AIS chains", default=256)
    betas: int = cfg.positive("steps of the geometric path from the base to exp(−E)", default=1000)
    power: float = cfg.positive("β_t = (t/betas)^power: the path's steps dense near the base", default=4.0)
    kernel: str = cfg.doc("registered sampler that moves the chains at each β (unused, like power, base, "
                          "reverse and settle_steps, for an energy that estimates its own log Z: an RBM)",
                          default="hmc")
    kernel_options: dict[str, Any] = attrs.field(
        factory=dict, metadata={"doc": "the kernel's settings (keys of its own section), e.g. "
                                       "{step_size = 0.05, n_leapfrog = 5}"})
    steps_per_beta: int = cfg.positive("kernel steps at each β", default=1)
    base: Literal["gaussian", "uniform", "reference"] = cfg.doc(
        "where AIS starts: a Gaussian fitted to the training set, uniform on the cube spanned by "
        "its smallest and largest values (widened by a twentieth on each side), or the energy's own "
        "normalised reference (an energy that tilts one, e.g. 'tilted_flow': the path anneals only "
        "the tilt)", default="gaussian")
    reverse: bool = cfg.doc("also reverse AIS (log Z from above, a conservative log-likelihood)", default=True)
    settle_steps: int = cfg.non_negative("kernel steps at the target from the forward chains' ends "
                                         "(resampled by their weights) before reverse AIS starts from "
                                         "them", default=100)
    bin_width: float = cfg.non_negative("width Δ of a quantisation bin in the data's units: held-out points "
                                        "are dequantised uniformly and bits/dim reported (0: continuous "
                                        "data, nats only)", default=0.0)
    quadrature: tuple[float, float] | None = attrs.field(
        default=None, validator=cfg.low_below_high,
        metadata={"doc": "2-D data: also log Z by summing exp(−E) on a grid over [low, high]²"})
    grid: int = cfg.positive("quadrature grid points per axis", default=1000)
    every_evaluation: bool = cfg.doc("also run at every scored evaluation during training", default=False)


class LogLik(Task):
    """log Z of the run's energy by AIS, then the mean held-out log-likelihood."""

    def __init__(self, config: LogLikConfig, energy: nn.Module, kernel: Any, device: torch.device):
        self.c, self.energy, self.kernel, self.device = config, energy, kernel, torch.device(device)

    @classmethod
    def from_config(cls, c: LogLikConfig, ctx) -> LogLik:
        energy = ctx.require("energy", "task 'loglik'")
        # a typo names kernel_options, not the recipe's [sampler]
        config = cfg.structured(dict(c.kernel_options), ctx.registry.get("sampler", c.kernel).config,
                                f"kernel_options (kernel '{c.kernel}')")
        return cls(c, energy, ctx.make("sampler", c.kernel, config), ctx.device)

    @property
    def every_evaluation(self) -> bool:
        return self.c.every_evaluation

    def run(self, objective, data, *, rng: torch.Generator, out: Path) -> dict[str, float]:
        c = self.c
        heldout = data.heldout()
        if heldout is None:
            raise EbmError("task 'loglik' needs held-out data, and this data set has none")
        binary = isinstance(self.energy, PartitionEstimator) and self.energy.binary
        if binary and c.bin_width:
            raise EbmError("task 'loglik': the energy is a probability mass on binary vectors; "
                           "bin_width must be 0 (nothing to dequantise)")
        train = data.dataset().x
        x = heldout.x if not c.examples else heldout.x[:c.examples]
        # dequantised copies: the training set for the yardsticks, the held-out points to score
        train, x = dequantised(train, c.bin_width, rng), dequantised(x, c.bin_width, rng)
        dims = x[0].numel()
        references = {name: model.to(self.device) for name, model in self._yardsticks(train, dims, binary).items()}
        if isinstance(self.energy, PartitionEstimator):  # its own estimators of log Z
            forward, backward = None, None
            logs, metrics = {}, {}
            for name, est in self.energy.log_partition(train, chains=c.chains, betas=c.betas, rng=rng).items():
                if isinstance(est, Estimate):
                    forward = est if forward is None else forward  # the first drawn
                    metrics.update({f"ess/{name}": est.ess, f"log_z_se/{name}": est.std_error})
                    est = est.log_z
                logs[name] = metrics[f"log_z/{name}"] = est
        else:
            if c.base == "reference":  # also a yardstick: what the tilt adds to it
                references["reference"] = self._reference()
            logs, metrics, forward, backward = self._ais(references[c.base], x, rng)
        if c.quadrature is not None:
            logs["quadrature"] = self._quadrature(dims)
            metrics["log_z/quadrature"] = logs["quadrature"]
        with torch.no_grad():
            on_device = x.to(self.device)
            e_heldout = _batched(self.energy, on_device).double()
            yardsticks = {name: -model(on_device).double() for name, model in references.items()}
        for name, log_z in logs.items():  # log-likelihoods: the same −E(x) minus each estimate of log Z
            metrics.update(self._scores(name, -e_heldout - log_z, dims))
        for name, log_p in yardsticks.items():
            metrics.update(self._scores(name, log_p, dims))
        if forward is not None:
            self._picture(forward, backward, metrics, out / "ais.png")
        return metrics

    def _yardsticks(self, train: Tensor, dims: int, binary: bool) -> dict[str, nn.Module]:
        """Binary data: independent Bernoulli units fitted to the training set, and the uniform
        mass on {0, 1}^D; else the fitted Gaussian and the uniform density on the set's box."""
        if binary:
            return {"bernoulli": BernoulliBase.fit(train), "uniform": BernoulliBase(torch.zeros(dims))}
        # one interval for every coordinate (a pixel constant in training may vary in held-out)
        low, high = float(train.min()), float(train.max())
        pad = (high - low) / 20 + 1e-6
        box = UniformBase(torch.full((dims,), low - pad), torch.full((dims,), high + pad))
        return {"gaussian": GaussianBase.fit(train, ridge=1e-6), "uniform": box}

    def _reference(self) -> nn.Module:
        if not isinstance(self.energy, Referenced):
            raise EbmError(f"task 'loglik': base = 'reference' needs an energy that tilts a normalised "
                           f"reference (e.g. 'tilted_flow'); {type(self.energy).__name__} has none")
        return self.energy.reference

    def _ais(self, base: nn.Module, x: Tensor, rng: torch.Generator):
        """log Z by forward and (optionally) reverse AIS from ``base`` along the geometric path."""
        c = self.c
        betas = geometric_betas(c.betas, power=c.power)
        energy = _Reshaped(self.energy, x.shape[1:])
        forward = ais(energy, base, self.kernel, n_chains=c.chains, betas=betas, steps=c.steps_per_beta, rng=rng)
        logs = {"ais": forward.log_z}
        metrics = {"log_z/ais": forward.log_z, "ess/ais": forward.ess}
        backward = None
        if c.reverse:
            # the forward ends, resampled by their weights (their mode weights are the path's, not
            # the target's, where chains cannot cross), then settled at the target
            pick = torch.multinomial((forward.log_weights - forward.log_weights.max()).exp(), c.chains,
                                     replacement=True, generator=rng)
            settled = forward.final[pick.to(forward.final.device)]
            if c.settle_steps:
                settled = self.kernel.run(settled, energy, c.settle_steps, rng=rng)
            backward = reverse_ais(energy, base, self.kernel, settled, betas=betas, steps=c.steps_per_beta, rng=rng)
            logs["raise"] = backward.log_z
            metrics.update({"log_z/raise": backward.log_z, "ess/raise": backward.ess})
        return logs, metrics, forward, backward

    def _scores(self, name: str, log_p: Tensor, dims: int) -> dict[str, float]:
        """nats per example (higher is better) and, for quantised data, bits per dimension
        of the discrete data (lower is better)."""
        nats = float(log_p.mean())
        out = {f"nats/{name}": nats}
        if self.c.bin_width:
            out[f"bits_per_dim/{name}"] = -(nats + dims * math.log(self.c.bin_width)) / (dims * math.log(2))
        return out

    def _quadrature(self, dims: int) -> float:
        if dims != 2:
            raise EbmError(f"task 'loglik': quadrature needs 2-D data, these have {dims} dimensions")
        low, high = self.c.quadrature
        n = self.c.grid
        h = (high - low) / n
        axis = low + h * (torch.arange(n, dtype=torch.float64) + 0.5)  # cell midpoints
        total = torch.full((), -math.inf, dtype=torch.float64)
        with torch.no_grad():
            for row in axis.split(max(1, 250_000 // n)):
                points = torch.cartesian_prod(row, axis).float().to(self.device)
                total = torch.logaddexp(total, torch.logsumexp(-self.energy(points).double().cpu(), 0))
        return float(total) + 2 * math.log(h)

    def _picture(self, forward, backward, metrics: dict[str, float], path: Path) -> None:
        """The chains' log-weights, forward and (negated) reverse, with each log Z estimate: a
        few chains far right of the rest mean the path was too short for the estimate."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        ax.hist(forward.log_weights.numpy(), bins=40, alpha=0.6, label="forward log w")
        if backward is not None:
            ax.hist(-backward.log_weights.numpy(), bins=40, alpha=0.6, label="reverse −log w")
        for (name, value), style in zip(((k[6:], v) for k, v in metrics.items() if k.startswith("log_z/")),
                                        ("-", "--", ":")):
            ax.axvline(value, color="k", linestyle=style, label=f"log Z {name} {value:.3f}")
        ax.set_xlabel("log-weight (nats)")
        ax.set_title(f"AIS: {self.c.chains} chains, {self.c.betas} steps of β, ESS {forward.ess:.0f}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        FigureCanvasAgg(fig)
        write_via(path, lambda tmp: fig.savefig(os.fspath(tmp), format="png", dpi=100))


class _Reshaped(nn.Module):
    """The energy on flat AIS states (the base works on flat vectors): reshaped to the events."""

    def __init__(self, energy: nn.Module, event_shape: torch.Size):
        super().__init__()
        self.energy, self.event_shape = energy, tuple(event_shape)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.energy(x.view(len(x), *self.event_shape))


def _batched(energy: nn.Module, x: Tensor, size: int = 4096) -> Tensor:
    return torch.cat([energy(chunk) for chunk in x.split(size)])
