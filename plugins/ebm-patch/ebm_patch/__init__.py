"""PatchGenCN (Zheng, Xie & Li 2021) for ebm: internal learning from a single photo.

Data ``photo`` (one of scikit-image's bundled photos and textures, or any image file),
energy ``patchgencn`` (a pyramid of fully convolutional patch energies), sampler
``patch_pyramid`` (coarse-to-fine Langevin at any image size), objective ``mle_patch``
(maximum likelihood at every scale), tasks ``patch_synthesis`` (other sizes, retargeting)
and ``patch_inpaint``; samples scored by a nearest-neighbour patch distance
(:mod:`ebm_patch.metrics`) beside crops of the photo, shuffled blocks, a random-phase
Gaussian and noise."""

from ebm_patch.data import PHOTOS, PhotoConfig, PhotoData, load_photo
from ebm_patch.energies import PatchGenCNConfig, PatchNet, PatchPyramid
from ebm_patch.metrics import (
    PatchMetrics,
    patch_distance,
    patch_terms,
    random_phase,
    shuffled_blocks,
)
from ebm_patch.objectives import PatchMLE, PatchMLEConfig
from ebm_patch.samplers import PatchPyramidSampler, PatchPyramidSamplerConfig
from ebm_patch.tasks import (
    PatchInpaint,
    PatchInpaintConfig,
    PatchSynthesis,
    PatchSynthesisConfig,
    centre_hole,
)
from ebmcore import Component, hookimpl

__all__ = ["PHOTOS", "PatchGenCNConfig", "PatchInpaint", "PatchInpaintConfig", "PatchMLE", "PatchMLEConfig",
           "PatchMetrics", "PatchNet", "PatchPyramid", "PatchPyramidSampler", "PatchPyramidSamplerConfig",
           "PatchSynthesis", "PatchSynthesisConfig", "PhotoConfig", "PhotoData", "centre_hole", "load_photo",
           "patch_distance", "patch_terms", "random_phase", "shuffled_blocks"]


@hookimpl
def ebm_components():
    return [
        Component("data", "photo", PhotoConfig, PhotoData.from_config),
        Component("energy", "patchgencn", PatchGenCNConfig, PatchPyramid.from_config),
        Component("sampler", "patch_pyramid", PatchPyramidSamplerConfig, PatchPyramidSampler.from_config),
        Component("objective", "mle_patch", PatchMLEConfig, PatchMLE.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("task", "patch_synthesis", PatchSynthesisConfig, PatchSynthesis.from_config,
                  requires=("energy", "sampler")),
        Component("task", "patch_inpaint", PatchInpaintConfig, PatchInpaint.from_config,
                  requires=("energy", "sampler")),
    ]
