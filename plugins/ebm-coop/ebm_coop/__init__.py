"""Cooperative learning for ebm: trainable generators that propose, Langevin under the EBM
that revises (CoopNets, Xie et al. 2018), the VAE version (variational MCMC teaching,
seed 002), their label- and completion-conditional forms, and the divergence triangle
(Han et al. 2019): generator, EBM and inference network trained jointly."""

from ebm_coop.generators import (
    DecoderGenerator,
    DeconvGenerator,
    DeconvGeneratorConfig,
    MLPGenerator,
    MLPGeneratorConfig,
    UNetGenerator,
    UNetGeneratorConfig,
)
from ebm_coop.objectives import CoopConfig, Cooperative, CooperativeVAE, CoopVAEConfig
from ebm_coop.tasks import Revision, RevisionConfig
from ebm_coop.triangle import (
    Reconstruction,
    ReconstructionConfig,
    Triangle,
    TriangleConfig,
)
from ebmcore import Component, hookimpl

__all__ = ["CoopConfig", "CoopVAEConfig", "Cooperative", "CooperativeVAE", "DecoderGenerator", "DeconvGenerator",
           "MLPGenerator", "Reconstruction", "Revision", "Triangle", "UNetGenerator"]


@hookimpl
def ebm_components():
    return [
        Component("generator", "mlp", MLPGeneratorConfig, MLPGenerator.from_config),
        Component("generator", "deconv", DeconvGeneratorConfig, DeconvGenerator.from_config),
        Component("generator", "unet", UNetGeneratorConfig, UNetGenerator.from_config),
        Component("objective", "coop", CoopConfig, Cooperative.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("objective", "coop_vae", CoopVAEConfig, CooperativeVAE.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("objective", "triangle", TriangleConfig, Triangle.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("task", "revision", RevisionConfig, Revision.from_config),
        Component("task", "reconstruction", ReconstructionConfig, Reconstruction.from_config),
    ]
