"""Maximum-likelihood learning for ebm (and its masked form, a completion model), the
generators that start its chains, and the task that scores chains continued from a
generator (a replay buffer)."""

from ebm_mle.generators import (
    DataInit,
    DataInitConfig,
    FittedGaussianConfig,
    FittedGaussianNoise,
    GaussianNoise,
    GaussianNoiseConfig,
    ReplayBuffer,
    ReplayBufferConfig,
    UniformNoise,
    UniformNoiseConfig,
)
from ebm_mle.masked import MaskedMaximumLikelihood, MaskedMLEConfig
from ebm_mle.objectives import MaximumLikelihood, MLEConfig
from ebm_mle.tasks import GeneratorChains, GeneratorChainsConfig
from ebmcore import Component, hookimpl

__all__ = ["DataInit", "FittedGaussianNoise", "GaussianNoise", "GeneratorChains", "MaskedMaximumLikelihood",
           "MaximumLikelihood", "ReplayBuffer", "UniformNoise"]


@hookimpl
def ebm_components():
    return [
        Component("generator", "uniform", UniformNoiseConfig, UniformNoise.from_config),
        Component("generator", "gaussian", GaussianNoiseConfig, GaussianNoise.from_config),
        Component("generator", "replay_buffer", ReplayBufferConfig, ReplayBuffer.from_config),
        Component("generator", "data", DataInitConfig, DataInit.from_config),
        Component("generator", "fitted_gaussian", FittedGaussianConfig, FittedGaussianNoise.from_config,
                  requires=("data",)),
        Component("objective", "mle", MLEConfig, MaximumLikelihood.from_config,
                  requires=("energy", "sampler", "generator")),
        Component("objective", "masked_mle", MaskedMLEConfig, MaskedMaximumLikelihood.from_config,
                  requires=("data", "energy", "sampler")),
        Component("task", "generator_chains", GeneratorChainsConfig, GeneratorChains.from_config,
                  requires=("energy", "sampler", "generator")),
    ]
