"""Contrastive estimation for ebm: noise-contrastive estimation against a Gaussian (``nce``,
Gutmann & Hyvärinen 2010) and flow contrastive estimation against a RealNVP trained
adversarially (``fce``, Gao et al. 2020), both with a learned log-normaliser."""

from ebm_nce.flow import RealNVP
from ebm_nce.noise import GaussianNoise
from ebm_nce.objectives import FCEConfig, FlowContrastive, NCEConfig, NoiseContrastive
from ebmcore import Component, hookimpl

__all__ = ["FlowContrastive", "GaussianNoise", "NoiseContrastive", "RealNVP"]


@hookimpl
def ebm_components():
    return [
        Component("objective", "nce", NCEConfig, NoiseContrastive.from_config,
                  requires=("data", "energy", "sampler")),
        Component("objective", "fce", FCEConfig, FlowContrastive.from_config, requires=("data", "energy")),
    ]
