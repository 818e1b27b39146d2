"""Score matching for ebm: energies learned through their score s = −∇ₓE, with no MCMC in
training — denoising (``dsm``), sliced (``ssm``) and noise-conditional multi-level (``ncsn``)
score matching — NCSN's annealed Langevin sampler (``annealed_score_langevin``) and a
denoiser-residual energy of images for it (``residual_cnn``)."""

from ebm_score.annealed import (
    AnnealedScoreInfo,
    AnnealedScoreLangevin,
    AnnealedScoreLangevinConfig,
    AnnealedScoreState,
)
from ebm_score.energies import ResidualCNN, ResidualCNNConfig
from ebm_score.ladder import sigmas
from ebm_score.ncsn import NCSN, NCSNConfig
from ebm_score.objectives import (
    DenoisingScoreMatching,
    DSMConfig,
    SlicedScoreMatching,
    SSMConfig,
)
from ebmcore import Component, hookimpl
from ebmcore.kit.losses import denoising_loss, score

__all__ = ["NCSN", "AnnealedScoreInfo", "AnnealedScoreLangevin", "AnnealedScoreLangevinConfig", "AnnealedScoreState",
           "DSMConfig", "DenoisingScoreMatching", "NCSNConfig", "ResidualCNN", "ResidualCNNConfig", "SSMConfig",
           "SlicedScoreMatching", "denoising_loss", "score", "sigmas"]


@hookimpl
def ebm_components():
    chains = ("energy", "sampler", "generator")
    return [
        Component("objective", "dsm", DSMConfig, DenoisingScoreMatching.from_config, requires=chains),
        Component("objective", "ssm", SSMConfig, SlicedScoreMatching.from_config, requires=chains),
        Component("objective", "ncsn", NCSNConfig, NCSN.from_config, requires=chains),
        Component("energy", "residual_cnn", ResidualCNNConfig, ResidualCNN.from_config),
        Component("sampler", "annealed_score_langevin", AnnealedScoreLangevinConfig,
                  AnnealedScoreLangevin.from_config),
    ]
