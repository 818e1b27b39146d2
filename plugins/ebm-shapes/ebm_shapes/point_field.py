"""Point-cloud completion by an energy of the missing points given the observed ones, learned
by denoising score matching: ShapeGF's gradient field (Cai et al., ECCV 2020, "Learning
Gradient Fields for Shape Generation") conditioned on the observed part of the cloud.

- energy ``point_field`` (condition ``completion``): E(X | observed) = Σ over the missing
  points i of f(xᵢ, c), where c encodes the observed points (a shared per-point MLP, max and
  mean pooled over the observed points only, an MLP). The observed points enter only
  through c. Its condition is :func:`ebmcore.kit.masks.completion_condition` with the
  channels last (``dim = -1``): per point, its coordinates (zeroed where missing) and a
  missing flag, ``(B, N, 4)``.
- objective ``point_completion_dsm``: each update hides the points of every training cloud
  past a random plane (:func:`ebm_shapes.point_tasks.split_plane`, as the completion task
  does), moves the hidden ones by σ·ε and fits the energy's score s = −∇ₓE there to the
  denoising direction (Vincent 2011): ½‖σ·s(x̃) + ε‖², averaged over the hidden points.
  Completing is one denoising step from a fill, x + σ²·s(x) on the missing points (Tweedie's
  posterior mean of a point seen under noise σ), starting from the missing entries of the x
  it is given: ``pointcloud_reconstruct`` with ``by = "objective"`` passes the nearest
  training cloud's fill, which the step moves toward the surface the energy infers from the
  observed half. More steps, or Langevin noise, made completions worse in the pilots (the
  points bunch where the density peaks). Evaluation samples: held-out clouds cut by a fresh
  random plane, completed from the nearest training cloud's fill — completions, not samples.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebm_shapes.point_tasks import nearest_fill, split_plane
from ebm_shapes.pointnet import _mlp, _sizes
from ebm_shapes.points import PointCloudData
from ebmcore import Batch, Condition, EbmError, Energy, Objective, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kit.losses import denoising_loss
from ebmcore.kit.masks import completion_condition


def point_condition(x: Tensor, missing: Tensor) -> Tensor:
    """(B, N, 4): the completion condition of clouds x (B, N, 3) whose points ``missing`` (B, N) are."""
    return completion_condition(x, missing[..., None].expand_as(x), dim=-1)


@attrs.frozen
class PointFieldConfig:
    """A conditional energy of the missing points of a cloud given its observed points (ShapeGF's field)."""

    point_layers: tuple[int, ...] = attrs.field(default=(64, 128), validator=_sizes, metadata={
        "doc": "widths of the shared per-point MLP over the observed points (max and mean pooled)"})
    code: int = cfg.positive("width of the observed points' encoding c", default=128)
    field_layers: tuple[int, ...] = attrs.field(default=(256, 256, 128), validator=_sizes, metadata={
        "doc": "hidden widths of f(xᵢ, c), the energy of one missing point"})
    activation: Literal["relu", "swish", "leaky_relu"] = cfg.doc("after each hidden layer", default="swish")


class PointField(Energy):
    """E(X | observed) = Σ_{i missing} f(xᵢ, c(observed points)); ``cond`` is :func:`point_condition`."""

    condition = Condition.COMPLETION

    def __init__(self, point: nn.Module, code: nn.Module, field: nn.Module):
        super().__init__()
        self.point, self.code, self.field = point, code, field

    @classmethod
    def from_config(cls, c: PointFieldConfig, ctx) -> PointField:
        who = "energy 'point_field'"
        shape = ctx.need_event_shape(who)
        if len(shape) != 2:
            raise EbmError(f"{who} needs point clouds (points, coordinates), the data are {tuple(shape)}")
        d = shape[1]
        return cls(nn.Sequential(*_mlp((d, *c.point_layers), c.activation, last=False)),
                   nn.Sequential(*_mlp((2 * c.point_layers[-1], c.code, c.code), c.activation, last=False)),
                   nn.Sequential(*_mlp((d + c.code, *c.field_layers, 1), c.activation, last=False)))

    def encode(self, cond: Tensor) -> Tensor:
        """(B, code): the observed points of ``cond`` pooled (max and mean over them only)."""
        observed = cond[..., -1:] < 0.5
        if not bool(observed.any(1).all()):
            raise EbmError("energy 'point_field' needs at least one observed point in every cloud")
        f = self.point(cond[..., :-1])
        top = f.masked_fill(~observed, float("-inf")).amax(1)
        mean = (f * observed).sum(1) / observed.sum(1)
        return self.code(torch.cat([top, mean], 1))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None or cond.shape != (*x.shape[:-1], x.shape[-1] + 1):
            got = None if cond is None else tuple(cond.shape)
            raise EbmError(f"energy 'point_field' needs the observed points as its condition, shape "
                           f"{(*x.shape[:-1], x.shape[-1] + 1)} (ebm_shapes.point_condition), got {got}")
        c = self.encode(cond)
        cloud = (cond[..., -1] > 0.5).nonzero()  # (missing points, 2): cloud, point
        f = self.field(torch.cat([x[cloud[:, 0], cloud[:, 1]], c[cloud[:, 0]]], -1))[:, 0]
        return torch.zeros(len(x), dtype=f.dtype, device=f.device).index_add(0, cloud[:, 0], f)


@attrs.frozen
class PointCompletionDSMConfig:
    """Denoising score matching of the points past a random plane given the rest; completion by one denoising step."""

    share: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                               metadata={"doc": "the share of each training cloud's points hidden (those lowest "
                                                "along a random direction), in (0, 1)"})
    sigma: float = cfg.positive("noise σ of the hidden points x̃ = x + σ·ε, and of the completion's step "
                                "x + σ²·s(x)", default=0.05)


class PointCompletionDSM(Objective):
    completes = True

    def __init__(self, energy: Energy, c: PointCompletionDSMConfig, train: Tensor, heldout: Tensor, device):
        super().__init__()
        self.energy, self.c, self.clouds, self.heldout = energy, c, train, heldout
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, c: PointCompletionDSMConfig, ctx) -> PointCompletionDSM:
        who = "objective 'point_completion_dsm'"
        data, energy = ctx.require("data", who), ctx.require("energy", who)
        if not isinstance(data, PointCloudData):
            raise EbmError(f"{who} needs point clouds (data 'pointclouds')")
        if energy.condition is not Condition.COMPLETION:
            raise EbmError(f"{who} needs an energy conditioned on the observed points ($.energy.type = "
                           f"'point_field'), got {type(energy).__name__} with condition = '{energy.condition.value}'")
        held = data.heldout()
        train = data.dataset().x
        return cls(energy, c, train, train if held is None else held.x, ctx.device)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        missing, _ = split_plane(x.cpu(), self.c.share, rng)
        missing = missing.to(x.device)
        noise = torch.randn(x.shape, generator=rng, device=rng.device).to(x) * missing[..., None]
        per_cloud, e = denoising_loss(self.energy, x, self.c.sigma, noise, point_condition(x, missing))
        # the observed entries' score is 0 (E sees them only through the condition): per hidden point
        loss = (per_cloud / missing.sum(1)).mean()
        return {"energy": loss}, {"loss/dsm": loss.detach(), "energy/data": e.mean().detach()}

    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """One denoising step x + σ²·s(x) on the ``missing`` points (``missing`` like ``x``: a point's
        three entries together), from the values ``x`` holds there; the others kept bit for bit."""
        if n_steps not in (None, 1):
            raise EbmError(f"objective 'point_completion_dsm' completes by one denoising step, not n_steps = {n_steps} "
                           "(more steps bunched the points in the pilots): leave the task's n_steps unset")
        point = missing[..., 0]
        if not bool((missing == point[..., None]).all()):
            raise EbmError("objective 'point_completion_dsm' completes whole points: a point's coordinates "
                           "must be all missing or all observed")
        _, g = energy_and_grad(self.energy, x, point_condition(x, point))
        return torch.where(missing, x - self.c.sigma**2 * g, x)

    def sample(self, n, *, rng, cond=None):
        x = self.heldout[torch.arange(n) % len(self.heldout)]
        missing, u = split_plane(x, self.c.share, rng)
        start = nearest_fill(x, missing, u, self.clouds)
        m = missing[..., None].expand_as(x)
        return self.complete(start.to(self.device), m.to(self.device), rng=rng)
