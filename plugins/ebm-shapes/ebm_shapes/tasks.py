"""Tasks on voxel shapes, each scored by IoU (occupied where > 0) beside baselines that need no model:

- ``voxel_recover``: held-out shapes with a random ``share`` of their cells missing (50 %),
  completed by masked sampling (the observed cells held, bit for bit); beside it the
  nearest training shape (the one agreeing with most observed cells, its cells filling the
  missing ones), morphological closing of the observed occupied cells (dilation then
  erosion by a 3³ cube; a missing cell is occupied if the closing occupies it), and the
  missing cells left empty.
- ``voxel_superres``: held-out shapes given only at 1/``factor`` the resolution (averages of
  ``factor``³ cells), completed by sampling E(x) + ‖pool(x) − low‖²/(2τ²), the low-resolution
  grid held as a soft constraint; beside it trilinear and nearest upsampling of the low grid,
  and the same chains on the constraint alone (E = 0: what the energy adds).
- ``voxel_probe``: a linear probe (multinomial logistic regression) on the energy's features
  (:meth:`ebm_shapes.energies.VoxelNet.features`) trained on the training shapes' labels:
  its held-out accuracy beside the same probe on raw cells; and, for a label-conditional
  model, the share of samples drawn for class y that the probe calls y (``assigned``),
  beside held-out shapes (the ceiling) and uniform noise, and the share whose nearest
  training shape (by IoU, no model involved) has class y (``nn_assigned``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm_shapes.data import VoxelData
from ebm_shapes.energies import VoxelNet
from ebm_shapes.metrics import iou, iou_matrix
from ebm_shapes.pictures import rows_png
from ebmcore import Condition, EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain


def _kernel() -> Any:
    return cfg.doc("a registered sampler for these chains, built with `kernel_options` (e.g. noise-free "
                   "Langevin); unset: the recipe's sampler", default=None)


_OPTIONS_DOC = "the kernel's settings (keys of its own section), e.g. {step_size = 1.0, noise = 0.0, n_steps = 30}"


def _n_steps() -> Any:
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": "sampler steps (default: the sampler's n_steps)"})


def _sampler(c, ctx, who: str):
    if c.kernel_options and c.kernel is None:
        raise EbmError(f"{who}: kernel_options needs kernel (the recipe's sampler keeps its own settings)")
    if c.kernel is None:
        return one_row_per_chain(ctx.require("sampler", who), who)
    config = cfg.structured(dict(c.kernel_options), ctx.registry.get("sampler", c.kernel).config,
                            f"kernel_options (kernel '{c.kernel}')")
    return one_row_per_chain(ctx.make("sampler", c.kernel, config), who)


def _voxel_data(ctx, who: str) -> VoxelData:
    data = ctx.require("data", who)
    if not isinstance(data, VoxelData):
        raise EbmError(f"{who} needs voxel shapes (data 'shapes' or 'meshes')")
    return data


def _mean_iou(a: Tensor, b: Tensor) -> float:
    return float(iou(a, b).mean())


def _run_batches(sampler, energy, start: Tensor, *, batch: int, n_steps, rng, device, mask: Tensor | None = None,
                 wrap=None) -> Tensor:
    done = []
    for i in range(0, len(start), batch):
        xs = start[i:i + batch].to(device)
        e = energy if wrap is None else wrap(i, i + len(xs))
        ms = None if mask is None else mask[i:i + batch].to(device)
        done.append(sampler.run(xs, e, n_steps, rng=rng, mask=ms).cpu())
    return torch.cat(done)


# -- recovery -----------------------------------------------------------------------------

@attrs.frozen
class RecoverConfig:
    """Held-out shapes with a share of their cells missing, completed by masked sampling; IoU beside baselines."""

    share: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                               metadata={"doc": "the share of each shape's cells missing, in (0, 1)"})
    n: int = cfg.positive("held-out shapes to recover (the first n)", default=50)
    fill: Literal["noise", "closing"] = cfg.doc(
        "what the missing cells start from: U(−1, 1) noise, or the closing baseline", default="noise")
    chains: int = cfg.positive("completions per shape, averaged before thresholding", default=1)
    kernel: str | None = _kernel()
    kernel_options: dict[str, Any] = attrs.field(factory=dict, metadata={"doc": _OPTIONS_DOC})
    n_steps: int | None = _n_steps()
    batch: int = cfg.positive("shapes per chain batch", default=50)
    show: int = cfg.positive("shapes in each row of the picture", default=4)


def missing_cells(shape: tuple[int, ...], share: float, rng: torch.Generator) -> Tensor:
    """True where a cell is missing: each independently with probability ``share``."""
    return torch.rand(shape, generator=rng, device=rng.device).cpu() < share


def closing(x: Tensor, missing: Tensor) -> Tensor:
    """Morphological closing (3³ cube) of the observed occupied cells, missing ones taken as
    empty; observed cells kept as they are."""
    occ = ((x > 0) & ~missing).float()
    closed = -F.max_pool3d(-F.max_pool3d(occ, 3, 1, 1), 3, 1, 1)
    return torch.where(missing, closed * 2 - 1, x)


def nearest_training(x: Tensor, missing: Tensor, train: Tensor, *, chunk: int = 256) -> Tensor:
    """Each shape's missing cells from the training shape that agrees with most of its
    observed cells."""
    seen = (x * (~missing)).flatten(1)  # ±1 where observed, 0 where missing
    t = train.flatten(1)
    best = torch.cat([(seen[i:i + chunk] @ t.T).argmax(1) for i in range(0, len(seen), chunk)])
    return torch.where(missing, train[best], x)


class VoxelRecover(Task):
    def __init__(self, c: RecoverConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: RecoverConfig, ctx) -> VoxelRecover:
        who = "task 'voxel_recover'"
        _voxel_data(ctx, who)
        return cls(c, ctx.require("energy", who), _sampler(c, ctx, who), ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = data.heldout().x[: self.c.n]
        train = data.dataset().x
        missing = missing_cells(tuple(x.shape), self.c.share, rng)
        closed, nearest = closing(x, missing), nearest_training(x, missing, train)
        empty = torch.where(missing, -torch.ones_like(x), x)
        noise = torch.where(missing, torch.rand(x.shape, generator=rng, device=rng.device).cpu() * 2 - 1, x)
        start = noise if self.c.fill == "noise" else closed
        total = torch.zeros_like(x)
        for _ in range(self.c.chains):
            total += _run_batches(self.sampler, self.energy, start, batch=self.c.batch, n_steps=self.c.n_steps,
                                  rng=rng, device=self.device, mask=~missing)
        recovered = torch.where(missing, total / self.c.chains, x)
        k = min(self.c.show, len(x))
        observed = torch.where(missing, -torch.ones_like(x), x)
        rows_png([x[:k], observed[:k], recovered[:k], closed[:k], nearest[:k]], out / "recover.png")
        score = _mean_iou(recovered, x)
        scores = {"iou": score, "iou_nearest_training": _mean_iou(nearest, x), "iou_closing": _mean_iou(closed, x),
                  "iou_missing_empty": _mean_iou(empty, x), "iou_noise_fill": _mean_iou(noise, x)}
        return scores | {"vs_closing": score / max(scores["iou_closing"], 1e-12),
                         "vs_nearest_training": score / max(scores["iou_nearest_training"], 1e-12)}


# -- super-resolution -----------------------------------------------------------------------

@attrs.frozen
class SuperResConfig:
    """Held-out shapes from a coarser grid (cell averages), completed by sampling under a soft constraint."""

    factor: int = attrs.field(default=2, validator=attrs.validators.ge(2),
                              metadata={"doc": "the low grid has res / factor cells a side (16³ for 32³, factor 2)"})
    n: int = cfg.positive("held-out shapes (the first n)", default=50)
    tau: float = cfg.positive("τ: how far a cell average of the sample may stray from the low grid's "
                              "(the constraint's std)", default=0.1)
    fill: Literal["noise", "trilinear"] = cfg.doc("the chains start from U(−1, 1) noise or trilinear upsampling",
                                                  default="trilinear")
    kernel: str | None = _kernel()
    kernel_options: dict[str, Any] = attrs.field(factory=dict, metadata={"doc": _OPTIONS_DOC})
    n_steps: int | None = _n_steps()
    batch: int = cfg.positive("shapes per chain batch", default=50)
    show: int = cfg.positive("shapes in each row of the picture", default=4)


class Constrained(nn.Module):
    """E(x) + Σ (avgpool_f(x) − low)² / (2τ²): the energy with the low grid as a soft constraint."""

    def __init__(self, energy: nn.Module, low: Tensor, factor: int, tau: float):
        super().__init__()
        self.energy, self.factor, self.tau = energy, factor, tau
        self.register_buffer("low", low)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        gap = F.avg_pool3d(x, self.factor) - self.low
        return self.energy(x, cond) + gap.flatten(1).pow(2).sum(1) / (2 * self.tau**2)


class _Zero(nn.Module):
    """E(x) = 0: the constraint alone (the yardstick of what the energy adds)."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return x.flatten(1).sum(1) * 0


class VoxelSuperRes(Task):
    def __init__(self, c: SuperResConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: SuperResConfig, ctx) -> VoxelSuperRes:
        who = "task 'voxel_superres'"
        data = _voxel_data(ctx, who)
        if data.res % c.factor:
            raise EbmError(f"{who}: factor {c.factor} does not divide the grid's {data.res} cells")
        return cls(c, ctx.require("energy", who), _sampler(c, ctx, who), ctx.device)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        x = data.heldout().x[: self.c.n]
        f = self.c.factor
        low = F.avg_pool3d(x, f)
        trilinear = F.interpolate(low, scale_factor=f, mode="trilinear", align_corners=False)
        nearest = F.interpolate(low, scale_factor=f, mode="nearest")
        noise = torch.rand(x.shape, generator=rng, device=rng.device).cpu() * 2 - 1
        start = trilinear if self.c.fill == "trilinear" else noise
        energy = self.energy

        def wrap(i, j):
            return Constrained(energy, low[i:j].to(self.device), f, self.c.tau)

        upsampled = _run_batches(self.sampler, energy, start, batch=self.c.batch, n_steps=self.c.n_steps, rng=rng,
                                 device=self.device, wrap=wrap)
        zero = _Zero()

        def alone(i, j):
            return Constrained(zero, low[i:j].to(self.device), f, self.c.tau)

        constraint = _run_batches(self.sampler, zero, start, batch=self.c.batch, n_steps=self.c.n_steps, rng=rng,
                                  device=self.device, wrap=alone)
        k = min(self.c.show, len(x))
        rows_png([x[:k], nearest[:k], trilinear[:k], upsampled[:k]], out / "superres.png")
        score, base = _mean_iou(upsampled, x), _mean_iou(trilinear, x)
        return {"iou": score, "iou_trilinear": base, "iou_nearest_upsampling": _mean_iou(nearest, x),
                "iou_constraint_only": _mean_iou(constraint, x),
                "vs_trilinear": score / max(base, 1e-12),
                "low_mismatch": float((F.avg_pool3d(upsampled, f) - low).abs().mean())}


# -- linear probe -------------------------------------------------------------------------

@attrs.frozen
class ProbeConfig:
    """A linear probe on the energy's features: held-out accuracy; class-conditional samples assigned to their class."""

    per_class: int = cfg.positive("class-conditional samples drawn per class (a label-conditional energy)",
                                  default=20)
    batch: int = cfg.positive("samples drawn per call", default=50)
    l2: float = cfg.non_negative("weight decay of the probe (on standardised features)", default=1e-3)
    iterations: int = cfg.positive("L-BFGS iterations fitting the probe", default=100)
    show: int = cfg.positive("samples of each class in the picture (one row per class)", default=4)


def fit_probe(features: Tensor, labels: Tensor, classes: int, *, l2: float, iterations: int):
    """A multinomial logistic regression on standardised ``features``: → a function from
    features to predicted labels."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    layer = nn.Linear(z.shape[1], classes).double()
    nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")
    zd = z.double()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(zd), labels) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)

    def predict(f: Tensor) -> Tensor:
        with torch.no_grad():
            return layer(((f - mean) / std).double()).argmax(1)
    return predict


class VoxelProbe(Task):
    def __init__(self, c: ProbeConfig, energy: VoxelNet, device):
        self.c, self.energy, self.device = c, energy, torch.device(device)

    @classmethod
    def from_config(cls, c: ProbeConfig, ctx) -> VoxelProbe:
        who = "task 'voxel_probe'"
        data = _voxel_data(ctx, who)
        if data.labels is None:
            raise EbmError(f"{who} needs labelled shapes (data 'shapes')")
        energy = ctx.require("energy", who)
        if not isinstance(energy, VoxelNet):
            raise EbmError(f"{who} probes the features of energy 'voxelnet', the recipe's energy is another")
        return cls(c, energy, ctx.device)

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.energy.features(x[i:i + 100].to(self.device)).cpu() for i in range(0, len(x), 100)])

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        train, labels, k = data.x, data.labels, data.num_classes
        held = data.heldout()
        kw = {"l2": self.c.l2, "iterations": self.c.iterations}
        probe = fit_probe(self._features(train), labels, k, **kw)
        raw = fit_probe(train.flatten(1), labels, k, **kw)
        scores = {"accuracy": float((probe(self._features(held.x)) == held.cond).float().mean()),
                  "accuracy/raw_voxels": float((raw(held.x.flatten(1)) == held.cond).float().mean())}
        if self.energy.condition is not Condition.LABEL:
            return scores
        want = torch.arange(self.c.per_class * k) % k
        samples = torch.cat([objective.sample(len(y), rng=rng, cond=y.to(self.device)).cpu()
                             for y in want.split(self.c.batch)])
        noise = torch.rand((len(want), *train.shape[1:]), generator=rng, device=rng.device).cpu() * 2 - 1
        nn_label = labels[iou_matrix(samples, train).argmax(1)]
        per_class = [float((probe(self._features(samples[want == y])) == y).float().mean()) for y in range(k)]
        held_nn = labels[iou_matrix(held.x, train).argmax(1)]
        rows_png([samples[want == y][: self.c.show] for y in range(k)], out / "classes.png")
        return scores | {
            "assigned": float((probe(self._features(samples)) == want).float().mean()),
            "assigned/heldout": scores["accuracy"],
            "assigned/noise": float((probe(self._features(noise)) == want).float().mean()),
            "assigned/min_class": min(per_class),
            "nn_assigned": float((nn_label == want).float().mean()),
            "nn_assigned/heldout": float((held_nn == held.cond).float().mean()),
            **{f"assigned/{data.class_names[y]}": a for y, a in enumerate(per_class)}}
