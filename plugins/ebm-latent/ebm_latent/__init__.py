"""Generators with a latent prior for ebm: the latent-space EBM prior (Pang et al. 2020) and
alternating back-propagation (Han et al. 2017), with anomaly detection by −log p(x, z)."""

from ebm_latent.energies import (
    GaussianPrior,
    LatentGaussianConfig,
    LatentMLPConfig,
    LatentMLPPrior,
)
from ebm_latent.objectives import (
    ABPConfig,
    AlternatingBackprop,
    LatentEBM,
    LatentEBMConfig,
)
from ebm_latent.tasks import Anomaly, AnomalyConfig
from ebmcore import Component, hookimpl

__all__ = ["AlternatingBackprop", "GaussianPrior", "LatentEBM", "LatentMLPPrior"]


@hookimpl
def ebm_components():
    return [
        Component("energy", "latent_mlp", LatentMLPConfig, LatentMLPPrior.from_config),
        Component("energy", "latent_gaussian", LatentGaussianConfig, GaussianPrior.from_config),
        Component("objective", "latent_ebm", LatentEBMConfig, LatentEBM.from_config,
                  requires=("energy", "generator")),
        Component("objective", "abp", ABPConfig, AlternatingBackprop.from_config,
                  requires=("energy", "generator")),
        Component("task", "anomaly", AnomalyConfig, Anomaly.from_config),
    ]
