"""A pyramid sampler that runs one registered kernel at every scale (ebm-multiscale's
multigrid and coarse-to-fine, ebm-patch's patch pyramid): subclasses write ``run_pyramid``.

Its recipe section has ``n_steps``, ``step_size``, ``noise``, ``compile``, ``kernel`` (a
registered sampler's name) and ``kernel_options`` (that kernel's other settings, checked by
its config); they make the kernel through the run's registry.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmcore import PyramidSampler, Sampler
from ebmcore import config as cfg


def kernel_per_scale(c, ctx, who: str) -> Sampler:
    """The per-scale kernel of the section ``c``, built through the context's registry."""
    keys = {"step_size": c.step_size, "n_steps": c.n_steps, **c.kernel_options}
    if c.noise is not None:
        keys["noise"] = c.noise
    if c.compile:
        keys["compile"] = True
    config = cfg.structured(keys, ctx.registry.get("sampler", c.kernel).config,
                            f"$.sampler.kernel_options (kernel '{c.kernel}' of {who})")
    return ctx.make("sampler", c.kernel, config)


class KernelPyramid(PyramidSampler):
    """``init``/``step`` are the kernel's, at one scale; ``run`` goes through the whole
    pyramid and returns the finest samples; the chain length per scale is the kernel's."""

    def __init__(self, kernel: Sampler, config=None, /, **settings):
        super().__init__(config, **settings)
        self.kernel = kernel

    @classmethod
    def from_config(cls, config, ctx) -> KernelPyramid:
        return cls(kernel_per_scale(config, ctx, cls.__name__), config)

    @property
    def n_steps(self) -> int:
        return self.kernel.n_steps

    def init(self, x, energy, *, rng, cond=None):
        return self.kernel.init(x, energy, rng=rng, cond=cond)

    def step(self, state, energy, *, rng, cond=None, mask=None):
        return self.kernel.step(state, energy, rng=rng, cond=cond, mask=mask)

    def run(self, x0: Tensor, energy: nn.Module, n_steps: int | None = None, *, rng: torch.Generator,
            cond: Tensor | None = None, mask: Tensor | None = None, trace: bool = False,
            temperatures=None) -> Tensor:
        if trace or temperatures is not None:
            raise ValueError(f"{type(self).__name__} runs one chain per scale: trace and temperatures "
                             "are not supported (run its kernel at one scale for them)")
        return self.run_pyramid(x0, energy, n_steps, rng=rng, cond=cond, mask=mask)[-1]
