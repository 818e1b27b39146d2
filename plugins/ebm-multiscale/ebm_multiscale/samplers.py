"""Samplers over a pyramid of resolutions. Each grid or stage runs a per-scale kernel
built through the registry (Langevin by default), so any sampler plugin can serve.

The kernel's own settings beyond step size, chain length and noise (HMC's ``n_leapfrog``…)
go in ``kernel_options``, validated by the kernel's config.

- Multigrid (Gao et al. 2018): chains at grid r start from the coarser grid's samples,
  upsampled; K steps per grid under E_r. ``upsample_noise`` adds Gaussian noise to each
  grid's starting image: the detail the coarser grid does not have, and the only source of
  diversity when the kernel is noise-free and the coarsest starts are alike (textures).
- Coarse-to-fine (Zhao et al. 2021, CF-EBM): the same, with doubling resolutions, and a
  fade-in at the start of each stage: the energy moves from the coarse stage's energy of
  the pooled image to the new stage's energy over ``fade_steps`` steps.
"""

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from ebm_multiscale.energies import Faded, check_pyramid, resize
from ebmcore import config as cfg
from ebmcore.kit.pyramid import KernelPyramid


def _kernel_options() -> Any:
    return attrs.field(factory=dict, metadata={"doc": "the kernel's other settings, e.g. {n_leapfrog = 3} "
                                                      "for 'hmc' (keys of its own section)"})


@attrs.frozen
class MultigridConfig:
    """Multigrid sampling: K kernel steps per grid, each grid started from the coarser one."""

    n_steps: int = cfg.positive("kernel steps per grid (K)", default=30)
    step_size: float = cfg.positive("step size of the per-grid kernel", default=0.01)
    noise: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)),
                                      metadata={"doc": "noise of the per-grid kernel (None: its default)"})
    kernel: str = cfg.doc("registered sampler run at each grid", default="langevin")
    kernel_options: dict[str, Any] = _kernel_options()
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
    kernel_options: dict[str, Any] = _kernel_options()
    compile: bool = cfg.compile_flag()


class Pyramid(KernelPyramid):
    """Runs ``kernel`` at each resolution of a multi-scale energy, coarse to fine.

    ``init``/``step`` are the kernel's, at one scale; ``run`` pools ``x0`` to the coarsest
    resolution and goes through the whole pyramid, returning the finest samples. Made from
    a kernel and the pyramid's own settings (``Multigrid(Langevin(...), upsample_noise=0.1)``);
    the chain length per scale is the kernel's. In a recipe the section's step size, chain
    length, noise and ``kernel_options`` make the kernel.
    """

    def __repr__(self) -> str:
        own = {k: v for k, v in attrs.asdict(self.config).items()
               if k in ("upsample_noise", "fade_steps", "compile")}
        return f"{type(self).__name__}({self.kernel!r}, {', '.join(f'{k}={v!r}' for k, v in own.items())})"

    def run_pyramid(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *,
                    rng: torch.Generator, cond: Tensor | None = None, mask: Tensor | None = None) -> list[Tensor]:
        """Samples at every resolution, coarse to fine (detached)."""
        resolutions = check_pyramid(energy, type(self).__name__)
        steps = self.n_steps if n_steps is None else n_steps
        x, prev, out = resize(x0, resolutions[0]), None, []
        for r in resolutions:
            x, m = self._start(resize(x, r), rng), None
            if mask is not None:  # observed pixels take the observed image at this scale
                m = resize(mask.expand_as(x0).float(), r) > 0.5
                x = torch.where(m, resize(x0, r), x)
            x = self._stage(x, energy, prev, steps, rng=rng, cond=cond, mask=m)
            out.append(x)
            prev = r
        return out

    def _start(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """A resolution's starting image, from the coarser resolution's samples resized."""
        return x

    def _stage(self, x, energy, prev, steps, *, rng, cond, mask):
        return self.kernel.run(x, energy, steps, rng=rng, cond=cond, mask=mask)


class Multigrid(Pyramid):
    """Multigrid sampling (Gao et al. 2018)."""

    Config = MultigridConfig

    def _start(self, x: Tensor, rng: torch.Generator) -> Tensor:
        if self.config.upsample_noise > 0:
            xi = torch.empty_like(x, memory_format=torch.contiguous_format).normal_(generator=rng)
            x = x + self.config.upsample_noise * xi
        return x


class CoarseToFine(Pyramid):
    """Coarse-to-fine sampling with fade-in (Zhao et al. 2021)."""

    Config = CoarseToFineConfig

    def _stage(self, x, energy, prev, steps, *, rng, cond, mask):
        fade = 0 if prev is None else min(self.config.fade_steps, steps)
        for t in range(fade):  # α rises to 1 over the fade, one kernel step each
            faded = Faded(energy, prev, (t + 1) / (fade + 1))
            x = self.kernel.run(x, faded, 1, rng=rng, cond=cond, mask=mask)
        return self.kernel.run(x, energy, steps - fade, rng=rng, cond=cond, mask=mask) if steps > fade else x
