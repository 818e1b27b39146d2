"""Samplers over a pyramid of resolutions. Each grid or stage runs a per-scale kernel
built through the registry (Langevin by default), so any sampler plugin can serve.

- Multigrid (Gao et al. 2018): chains at grid r start from the coarser grid's samples,
  upsampled; K steps per grid under E_r. ``upsample_noise`` adds Gaussian noise to each
  grid's starting image: the detail the coarser grid does not have, and the only source of
  diversity when the kernel is noise-free and the coarsest starts are alike (textures).
- Coarse-to-fine (Zhao et al. 2021, CF-EBM): the same, with doubling resolutions, and a
  fade-in at the start of each stage: the energy moves from the coarse stage's energy of
  the pooled image to the new stage's energy over ``fade_steps`` steps.
"""

import attrs
import torch
from torch import Tensor, nn

from ebm_multiscale.energy import Faded, check_pyramid, resize
from ebmcore import EbmError, Sampler
from ebmcore import config as cfg


@attrs.frozen
class MultigridConfig:
    """Multigrid sampling: K kernel steps per grid, each grid started from the coarser one."""

    n_steps: int = cfg.positive("kernel steps per grid (K)", default=30)
    step_size: float = cfg.positive("step size of the per-grid kernel", default=0.01)
    noise: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
                                      metadata={"doc": "noise of the per-grid kernel (None: its default)"})
    kernel: str = cfg.doc("registered sampler run at each grid", default="langevin")
    upsample_noise: float = cfg.non_negative("std of Gaussian noise added to each grid's starting image "
                                             "(after upsampling from the coarser grid)", default=0.0)
    compile: bool = cfg.compile_flag()


@attrs.frozen
class CoarseToFineConfig:
    """Coarse-to-fine sampling with a fade-in between stages (CF-EBM)."""

    n_steps: int = cfg.positive("kernel steps per stage", default=30)
    step_size: float = cfg.positive("step size of the per-stage kernel", default=0.01)
    noise: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
                                      metadata={"doc": "noise of the per-stage kernel (None: its default)"})
    fade_steps: int = cfg.non_negative("steps at the start of a stage over which the energy fades in",
                                       default=10)
    kernel: str = cfg.doc("registered sampler run at each stage", default="langevin")
    compile: bool = cfg.compile_flag()


def _kernel(c, ctx, who: str) -> Sampler:
    """Build the per-scale kernel through the registry from this section's keys."""
    registry = ctx.registry
    if registry is None:
        from ebmcore import default_host

        registry = default_host().registry
    component = registry.get("sampler", c.kernel)
    keys = {"step_size": c.step_size, "n_steps": c.n_steps}
    if c.noise is not None:
        keys["noise"] = c.noise
    if c.compile:
        keys["compile"] = True
    config, problems = cfg.structure(keys, component.config, f"$.sampler (kernel '{c.kernel}' of {who})")
    if problems:
        raise EbmError("; ".join(f"{path}: {msg}" for path, msg in problems))
    return component.build(config, ctx)


class Pyramid(Sampler):
    """Runs ``kernel`` at each resolution of a multi-scale energy, coarse to fine.

    ``init``/``step`` are the kernel's, at one scale; ``run`` pools ``x0`` to the coarsest
    resolution and goes through the whole pyramid, returning the finest samples.
    """

    def __init__(self, kernel: Sampler, n_steps: int | None = None, upsample_noise: float = 0.0):
        self.kernel = kernel
        self.n_steps = kernel.n_steps if n_steps is None else n_steps
        self.upsample_noise = upsample_noise

    def init(self, x, energy, cond=None):
        return self.kernel.init(x, energy, cond)

    def step(self, state, energy, *, rng, cond=None, mask=None):
        return self.kernel.step(state, energy, rng=rng, cond=cond, mask=mask)

    def run(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *, rng: torch.Generator,
            cond: Tensor | None = None, mask: Tensor | None = None, **_ignored) -> Tensor:
        return self.run_pyramid(x0, energy, n_steps, rng=rng, cond=cond, mask=mask)[-1]

    def run_pyramid(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *,
                    rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None) -> list[Tensor]:
        """Samples at every resolution, coarse to fine (detached)."""
        resolutions = check_pyramid(energy, type(self).__name__)
        steps = self.n_steps if n_steps is None else n_steps
        x, prev, out = resize(x0, resolutions[0]), None, []
        for r in resolutions:
            x, m = resize(x, r), None
            if self.upsample_noise > 0:
                xi = torch.empty_like(x, memory_format=torch.contiguous_format).normal_(generator=rng)
                x = x + self.upsample_noise * xi
            if mask is not None:  # observed pixels take the observed image at this scale
                m = resize(mask.expand_as(x0).float(), r) > 0.5
                x = torch.where(m, resize(x0, r), x)
            x = self._stage(x, energy, prev, steps, rng=rng, cond=cond, mask=m)
            out.append(x)
            prev = r
        return out

    def _stage(self, x, energy, prev, steps, *, rng, cond, mask):
        return self.kernel.run(x, energy, steps, rng=rng, cond=cond, mask=mask)


class Multigrid(Pyramid):
    """Multigrid sampling (Gao et al. 2018)."""

    @classmethod
    def from_config(cls, c: MultigridConfig, ctx) -> "Multigrid":
        return cls(_kernel(c, ctx, "multigrid"), upsample_noise=c.upsample_noise)


class CoarseToFine(Pyramid):
    """Coarse-to-fine sampling with fade-in (Zhao et al. 2021)."""

    def __init__(self, kernel: Sampler, n_steps: int | None = None, fade_steps: int = 10):
        super().__init__(kernel, n_steps)
        self.fade_steps = fade_steps

    @classmethod
    def from_config(cls, c: CoarseToFineConfig, ctx) -> "CoarseToFine":
        return cls(_kernel(c, ctx, "coarse_to_fine"), fade_steps=c.fade_steps)

    def _stage(self, x, energy, prev, steps, *, rng, cond, mask):
        fade = 0 if prev is None else min(self.fade_steps, steps)
        for t in range(fade):  # α rises to 1 over the fade, one kernel step each
            faded = Faded(energy, prev, (t + 1) / (fade + 1))
            x = self.kernel.run(x, faded, 1, rng=rng, cond=cond, mask=mask)
        return self.kernel.run(x, energy, steps - fade, rng=rng, cond=cond, mask=mask) if steps > fade else x
