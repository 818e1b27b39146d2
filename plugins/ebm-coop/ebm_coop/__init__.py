"""Cooperative learning for ebm: trainable generators that propose, Langevin under the EBM
that revises (CoopNets, Xie et al. 2018), the VAE version (variational MCMC teaching,
seed 002), and their label- and completion-conditional forms."""

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
from ebmcore import Component, hookimpl

__all__ = ["CoopConfig", "CoopVAEConfig", "Cooperative", "CooperativeVAE", "DecoderGenerator", "DeconvGenerator",
           "MLPGenerator", "Revision", "UNetGenerator"]


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
        Component("task", "revision", RevisionConfig, Revision.from_config),
    ]
