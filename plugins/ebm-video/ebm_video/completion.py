"""Recovery of missing frames or pixels by an energy of the missing values given the observed
ones, learned by denoising score matching — the completion field of ebm-shapes'
``point_field`` for clips: no MCMC in training or in recovery.

- energy ``clip_field`` (condition ``completion``): E(x | observed) = Σ over the missing
  values of f(x, observed), f a stack of 3-D convolutions (a local field: each value's
  potential reads a few neighbouring frames and pixels). Its condition is
  :func:`ebmcore.kit.masks.completion_condition` (the clip with missing values zeroed, and a
  missing channel). The observed values enter only through the condition (x is zeroed where
  observed), so ∇ₓE is zero there.
- objective ``clip_completion_dsm``: each update hides the training clips' values as the
  task ``recover`` does (``missing`` and ``share`` are its settings), moves the hidden ones by
  σ·ε and fits s = −∇ₓE there to the denoising direction (Vincent 2011), ½‖σ·s(x̃) + ε‖² per
  hidden value. Completing is one denoising step x + σ²·s(x) on the missing values (Tweedie's
  posterior mean of a value seen under noise σ) from the values x holds there: ``recover``
  with ``by = "objective"`` passes a baseline's fill (``fill = "mean"``: the temporal mean),
  which the step corrects from the neighbouring observed frames. Evaluation samples:
  held-out clips so hidden, completed from the temporal mean — completions, not synthesis.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebm_video.tasks import missing_field, missing_mask, share_field, temporal_mean
from ebmcore import Batch, Condition, EbmError, Energy, Objective, energy_and_grad
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS
from ebmcore.kit.losses import denoising_loss
from ebmcore.kit.masks import completion_condition, missing_from_condition


def _triple(_inst, _attr, value):
    if len(value) != 3 or any(k < 1 or k % 2 == 0 for k in value):
        raise ValueError(f"must be an odd [time, height, width] kernel (the field keeps the clip's shape), "
                         f"got {list(value)}")


@attrs.frozen
class ClipFieldConfig:
    """A conditional energy of a clip's missing values given its observed ones: a local 3-D conv field."""

    channels: tuple[int, ...] = attrs.field(default=(32, 32, 32), validator=cfg.positive_widths,
                                            metadata={"doc": "channels of each hidden 3-D conv layer"})
    kernel: tuple[int, int, int] = attrs.field(default=(3, 3, 3), validator=_triple,
                                               metadata={"doc": "[time, height, width] kernel of every layer (odd)"})
    activation: Literal["relu", "swish", "leaky_relu"] = cfg.doc("after each hidden layer", default="swish")


class ClipField(Energy):
    """E(x | observed) = Σ_{missing values} f([x on the missing values, condition]); ``cond`` is
    ``completion_condition(x, missing)`` ``(B, C + 1, T, H, W)``."""

    condition = Condition.COMPLETION

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    @classmethod
    def from_config(cls, c: ClipFieldConfig, ctx) -> ClipField:
        who = "energy 'clip_field'"
        shape = ctx.need_event_shape(who)
        if len(shape) != 4:
            raise EbmError(f"{who} needs clips (channels, frames, height, width), the data are {tuple(shape)}")
        channels = shape[0]
        padding = tuple(k // 2 for k in c.kernel)
        layers: list[nn.Module] = []
        for a, b in pairwise((2 * channels + 1, *c.channels)):
            layers += [nn.Conv3d(a, b, c.kernel, padding=padding), ACTIVATIONS[c.activation]()]
        layers.append(nn.Conv3d(c.channels[-1], channels, c.kernel, padding=padding))
        return cls(nn.Sequential(*layers))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        want = (x.shape[0], x.shape[1] + 1, *x.shape[2:])
        if cond is None or cond.shape != want:
            got = None if cond is None else tuple(cond.shape)
            raise EbmError(f"energy 'clip_field' needs the observed values as its condition, shape {want} "
                           f"(ebmcore.kit.masks.completion_condition), got {got}")
        missing = missing_from_condition(cond).to(x.dtype)
        return (self.field(torch.cat([x * missing, cond], 1)) * missing).flatten(1).sum(1)


@attrs.frozen
class ClipCompletionDSMConfig:
    """Denoising score matching of hidden frames or pixels given the rest; recovery by one denoising step."""

    missing: Literal["frames", "pixels"] = missing_field()  # what each update hides, as the task 'recover'
    share: float = share_field()
    sigma: float = cfg.positive("noise σ of the hidden values x̃ = x + σ·ε, and of the recovery's step "
                                "x + σ²·s(x)", default=0.02)


class ClipCompletionDSM(Objective):
    completes = True

    def __init__(self, energy: Energy, c: ClipCompletionDSMConfig, heldout: Tensor, device):
        super().__init__()
        self.energy, self.c, self.heldout = energy, c, heldout
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, c: ClipCompletionDSMConfig, ctx) -> ClipCompletionDSM:
        who = "objective 'clip_completion_dsm'"
        data, energy = ctx.require("data", who), ctx.require("energy", who)
        shape = ctx.need_event_shape(who)
        if len(shape) != 4:
            raise EbmError(f"{who} needs clips (channels, frames, height, width), the data are {tuple(shape)}")
        if c.missing == "frames" and shape[1] < 3:
            raise EbmError(f"{who}: missing = 'frames' needs clips of at least 3 frames, these have {shape[1]}")
        if energy.condition is not Condition.COMPLETION:
            raise EbmError(f"{who} needs an energy conditioned on the observed values ($.energy.type = "
                           f"'clip_field'), got {type(energy).__name__} with condition = '{energy.condition.value}'")
        held = data.heldout()
        if held is None:
            raise EbmError(f"{who} needs data with a held-out split (its evaluation completes held-out clips)")
        return cls(energy, c, held.x, ctx.device)

    def param_groups(self):
        return {"energy": self.energy}

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        missing = missing_mask(tuple(x.shape), self.c.missing, self.c.share, rng).to(x.device)
        hidden = missing.to(x.dtype)
        noise = torch.randn(x.shape, generator=rng, device=rng.device).to(x) * hidden
        per_clip, e = denoising_loss(self.energy, x, self.c.sigma, noise, completion_condition(x, missing))
        # the observed values' score is 0 (E sees them only through the condition): per hidden value
        loss = (per_clip / hidden.flatten(1).sum(1).clamp(min=1)).mean()
        return {"energy": loss}, {"loss/dsm": loss.detach(), "energy/data": e.mean().detach()}

    def complete(self, x: Tensor, missing: Tensor, *, rng, n_steps: int | None = None) -> Tensor:
        """One denoising step x + σ²·s(x) on the ``missing`` values from those ``x`` holds there;
        the observed ones kept bit for bit."""
        if n_steps not in (None, 1):
            raise EbmError(f"objective 'clip_completion_dsm' recovers by one denoising step, not n_steps = "
                           f"{n_steps}: leave the task's n_steps unset")
        _, g = energy_and_grad(self.energy, x, completion_condition(x, missing))
        return torch.where(missing, x - self.c.sigma**2 * g, x)

    def sample(self, n, *, rng, cond=None):
        x = self.heldout[torch.arange(n) % len(self.heldout)]
        missing = missing_mask(tuple(x.shape), self.c.missing, self.c.share, rng)
        return self.complete(temporal_mean(x, missing).to(self.device), missing.to(self.device), rng=rng)
