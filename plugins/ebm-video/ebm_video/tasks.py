"""Task ``recover``: held-out clips with frames or pixels missing, completed by the recipe's
sampler on the energy with the observed entries held fixed (masked sampling), or by the
objective's completion model, scored by
the MSE on the missing entries beside two baselines that need no model:

- ``mse_interpolation``: each missing value linearly interpolated in time between the
  nearest observed values of the same pixel (held at the ends);
- ``mse_temporal_mean``: each missing value the mean of the observed values of its pixel;
- ``mse_noise_fill``: uniform noise in the missing values.

The chains start from noise (``fill = "noise"``) or from a baseline (``fill =
"interpolation"`` or ``"mean"``: the sampler then refines it); ``chains > 1`` averages several
completions, an estimate of the conditional mean, which minimises the expected MSE (one
sample's error is about twice the conditional variance, the mean's once). ``by =
"objective"`` recovers by the objective's own completion model from that fill instead (e.g.
``clip_completion_dsm``'s denoising step; no sampler needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from einops import rearrange
from torch import Tensor

from ebm_video.pictures import clips_png
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.masks import check_completes
from ebmcore.kit.replicas import one_row_per_chain


def missing_field() -> Any:
    """What is missing in a clip (the task's setting, and what a completion objective hides)."""
    return cfg.doc("'frames': every other frame missing (the first and last observed); 'pixels': a random "
                   "`share` of the pixels of every frame", default="frames")


def share_field() -> Any:
    return attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
                       metadata={"doc": "missing = 'pixels': the share missing, in (0, 1)"})


@attrs.frozen
class RecoverConfig:
    """Recovery of held-out clips with frames or pixels missing, by masked sampling or the objective's model."""

    missing: Literal["frames", "pixels"] = missing_field()
    share: float = share_field()
    n: int = cfg.positive("held-out clips to recover (the first n)", default=64)
    fill: Literal["noise", "interpolation", "mean"] = cfg.doc(
        "what the missing values start from: U(−1, 1) noise, the interpolation baseline, or the temporal "
        "mean baseline", default="noise")
    by: Literal["sampler", "objective"] = cfg.doc(
        "'sampler': the recipe's sampler (or `kernel`) on the energy, observed values held; 'objective': the "
        "objective's own completion model from `fill` (e.g. clip_completion_dsm's denoising step)",
        default="sampler")
    chains: int = cfg.positive("independent completions per clip, averaged (an estimate of the "
                               "conditional mean)", default=1)
    kernel: str | None = cfg.doc("a registered sampler for the recovery chains, built with `kernel_options` "
                                 "(e.g. noise-free Langevin); unset: the recipe's sampler", default=None)
    kernel_options: dict[str, Any] = attrs.field(
        factory=dict, metadata={"doc": "the kernel's settings (keys of its own section), e.g. "
                                       "{step_size = 5.0, noise = 0.0, n_steps = 30}"})
    n_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "sampler steps (default: the sampler's n_steps)"})
    batch: int = cfg.positive("clips per chain batch", default=64)
    show: int = cfg.positive("clips in each block of the picture (original, observed, recovered, "
                             "interpolation, then the errors ×10 of the recovery, the interpolation and the "
                             "temporal mean: black where exact)", default=2)

    def __attrs_post_init__(self):
        if self.kernel_options and self.kernel is None:
            raise ValueError("kernel_options needs kernel (the recipe's sampler keeps its own settings)")
        if self.by == "objective" and self.kernel is not None:
            raise ValueError("kernel is for by = 'sampler' (by = 'objective' recovers by the objective's model)")


def missing_mask(shape: tuple[int, ...], how: str, share: float, rng: torch.Generator) -> Tensor:
    """True where a value of clips ``(N, C, T, H, W)`` is missing: every other frame (odd
    frames; the last frame observed), or a random ``share`` of each frame's pixels (all
    channels of a pixel together)."""
    n, c, t, h, w = shape
    if how == "frames":
        frames = torch.zeros(t, dtype=torch.bool)
        frames[1:t - 1:2] = True
        return frames.view(1, 1, t, 1, 1).expand(shape).clone()
    pixels = torch.rand((n, 1, t, h, w), generator=rng, device=rng.device).cpu() < share
    return pixels.expand(shape).clone()


def interpolated(x: Tensor, missing: Tensor) -> Tensor:
    """Each missing value linearly interpolated in time between the nearest observed values
    of its pixel, held constant beyond the first and last observed ones."""
    flat = rearrange(x, "n c t h w -> (n c h w) t")
    gone = rearrange(missing, "n c t h w -> (n c h w) t")
    t = torch.arange(flat.shape[1], dtype=x.dtype).expand_as(flat)
    big = flat.shape[1]
    # the nearest observed time at or before / at or after each time
    before = torch.where(gone, -1, t.long()).cummax(1).values
    after = torch.where(gone, big, t.long()).flip(1).cummin(1).values.flip(1)
    before_ok, after_ok = before >= 0, after < big
    b, a = before.clamp(0, big - 1), after.clamp(0, big - 1)
    xb, xa = flat.gather(1, b), flat.gather(1, a)
    weight = torch.where(after > before, (t - before) / (after - before).clamp(min=1), torch.zeros_like(t))
    between = xb + weight * (xa - xb)
    out = torch.where(before_ok & after_ok, between, torch.where(before_ok, xb, xa))
    out = torch.where(gone, out, flat)
    n, c, _, h, w = x.shape
    return rearrange(out, "(n c h w) t -> n c t h w", n=n, c=c, h=h, w=w)


def temporal_mean(x: Tensor, missing: Tensor) -> Tensor:
    """Each missing value the mean of the observed values of its pixel (0 where none is)."""
    seen = (~missing).to(x.dtype)
    mean = (x * seen).sum(2, keepdim=True) / seen.sum(2, keepdim=True).clamp(min=1)
    return torch.where(missing, mean.expand_as(x), x)


def _error(a: Tensor, b: Tensor, gain: float = 10.0) -> Tensor:
    """|a − b|·gain as pictures in [−1, 1]: black where they agree, white at 0.2 apart (gain 10)."""
    return ((a - b).abs() * gain * 2 - 1).clamp(max=1)


def _mse(a: Tensor, b: Tensor, where: Tensor) -> float:
    return float(((a - b).pow(2) * where).sum() / where.sum().clamp(min=1))


class Recover(Task):
    """Masked sampling of held-out clips; ``mse`` on the missing values beside the baselines."""

    def __init__(self, c: RecoverConfig, energy, sampler, device):
        self.c, self.energy, self.sampler, self.device = c, energy, sampler, torch.device(device)

    @classmethod
    def from_config(cls, c: RecoverConfig, ctx) -> "Recover":
        who = "task 'recover'"
        shape = ctx.need_event_shape(who)
        if len(shape) != 4:
            raise EbmError(f"{who} needs clips (channels, frames, height, width), the data are {tuple(shape)}")
        if c.missing == "frames" and shape[1] < 3:
            raise EbmError(f"{who}: missing = 'frames' needs clips of at least 3 frames, these have {shape[1]}")
        if c.by == "objective":
            check_completes(ctx, who)
            sampler = None
        elif c.kernel is None:
            sampler = one_row_per_chain(ctx.require("sampler", who), who)
        else:  # a typo names kernel_options, not the recipe's [sampler]
            config = cfg.structured(dict(c.kernel_options), ctx.registry.get("sampler", c.kernel).config,
                                    f"kernel_options (kernel '{c.kernel}')")
            sampler = one_row_per_chain(ctx.make("sampler", c.kernel, config), who)
        return cls(c, ctx.require("energy", who), sampler, ctx.device)

    def recover(self, objective, x: Tensor, missing: Tensor, fill: Tensor, *, rng: torch.Generator) -> Tensor:
        """The clips after chains (or the objective's completion) from ``fill`` in the missing
        values (the mean of ``chains`` of them); observed values are those of ``x``, bit for bit."""
        start = torch.where(missing, fill, x)
        total = torch.zeros_like(x)
        for _ in range(self.c.chains):
            done = []
            for xs, ms in zip(start.split(self.c.batch), missing.split(self.c.batch), strict=True):
                xs, ms = xs.to(self.device), ms.to(self.device)
                if self.sampler is None:
                    done.append(objective.complete(xs, ms, rng=rng, n_steps=self.c.n_steps).cpu())
                else:
                    done.append(self.sampler.run(xs, self.energy, self.c.n_steps, rng=rng, mask=~ms).cpu())
            total += torch.cat(done)
        return torch.where(missing, total / self.c.chains, x)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        held = data.heldout()
        if held is None:
            raise EbmError("task 'recover' needs data with a held-out split")
        x = held.x[: self.c.n]
        missing = missing_mask(tuple(x.shape), self.c.missing, self.c.share, rng)
        lerp, mean = interpolated(x, missing), temporal_mean(x, missing)
        noise = torch.where(missing, torch.rand(x.shape, generator=rng, device=rng.device).cpu() * 2 - 1, x)
        fill = {"noise": noise, "interpolation": lerp, "mean": mean}[self.c.fill]
        recovered = self.recover(objective, x, missing, fill, rng=rng)
        k = min(self.c.show, len(x))
        observed = torch.where(missing, torch.zeros_like(x), x)  # missing shown grey
        shown = [x, observed, recovered, lerp, *(_error(y, x) for y in (recovered, lerp, mean))]
        clips_png(torch.cat([y[:k] for y in shown]), out / "recover.png", shown=len(shown) * k)
        where = missing.to(x.dtype)
        mse, mse_lerp, mse_mean = _mse(recovered, x, where), _mse(lerp, x, where), _mse(mean, x, where)
        return {"mse": mse, "mse_interpolation": mse_lerp, "mse_temporal_mean": mse_mean,
                "mse_noise_fill": _mse(noise, x, where), "vs_interpolation": mse / max(mse_lerp, 1e-12),
                "vs_temporal_mean": mse / max(mse_mean, 1e-12)}
