"""Learning against a known density for ebm: noise-contrastive estimation against a Gaussian
(``nce``, Gutmann & Hyvärinen 2010) and flow contrastive estimation against a RealNVP trained
adversarially (``fce``, Gao et al. 2020), both with a learned log-normaliser; and a RealNVP
tilted by an energy (``tilted_flow``), learned by maximum likelihood with importance-sampled
negatives from the flow (``snis_mle``)."""

from ebm_nce.energies import FlowReference, TiltedFlow, TiltedFlowConfig, fit_flow
from ebm_nce.flow import RealNVP
from ebm_nce.noise import GaussianNoise
from ebm_nce.objectives import FCEConfig, FlowContrastive, ImportanceMLE, NCEConfig, NoiseContrastive, SNISConfig
from ebmcore import Component, hookimpl

__all__ = ["FlowContrastive", "FlowReference", "GaussianNoise", "ImportanceMLE", "NoiseContrastive", "RealNVP",
           "TiltedFlow", "fit_flow"]


@hookimpl
def ebm_components():
    return [
        Component("objective", "nce", NCEConfig, NoiseContrastive.from_config,
                  requires=("data", "energy", "sampler")),
        Component("objective", "fce", FCEConfig, FlowContrastive.from_config, requires=("data", "energy")),
        Component("energy", "tilted_flow", TiltedFlowConfig, TiltedFlow.from_config, requires=("data",)),
        Component("objective", "snis_mle", SNISConfig, ImportanceMLE.from_config, requires=("data", "energy")),
    ]
