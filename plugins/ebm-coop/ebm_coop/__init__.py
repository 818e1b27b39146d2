"""Cooperative learning for ebm: trainable generators that propose, Langevin under the EBM
that revises (CoopNets, Xie et al. 2018), the VAE version (variational MCMC teaching,
seed 002), and their label- and completion-conditional forms."""

from ebm_coop.generators import (
    DecoderGenerator,
    DeconvGeneratorConfig,
    MLPGeneratorConfig,
    UNetGeneratorConfig,
    deconv_generator,
    mlp_generator,
    unet_generator,
)
from ebm_coop.objectives import CoopConfig, Cooperative, CooperativeVAE, CoopVAEConfig
from ebm_coop.tasks import RevisionConfig, build_revision
from ebmcore import Component, hookimpl

__all__ = ["CoopConfig", "CoopVAEConfig", "Cooperative", "CooperativeVAE", "DecoderGenerator"]


@hookimpl
def ebm_components():
    return [
        Component("generator", "mlp", MLPGeneratorConfig, mlp_generator),
        Component("generator", "deconv", DeconvGeneratorConfig, deconv_generator),
        Component("generator", "unet", UNetGeneratorConfig, unet_generator),
        Component("objective", "coop", CoopConfig, Cooperative.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("objective", "coop_vae", CoopVAEConfig, CooperativeVAE.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("task", "revision", RevisionConfig, build_revision),
    ]
