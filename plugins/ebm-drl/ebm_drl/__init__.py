"""Diffusion recovery likelihood for ebm (Gao et al. 2021): noise levels, level-conditioned
energies, and the objective that learns them by recovery and samples by progressive denoising."""

from ebm_drl.energies import LevelCNN, LevelCNNConfig, LevelMLP, LevelMLPConfig
from ebm_drl.objectives import DiffusionRecoveryLikelihood, DRLConfig
from ebm_drl.schedule import Levels
from ebmcore import Component, hookimpl

__all__ = ["DiffusionRecoveryLikelihood", "LevelCNN", "LevelMLP", "Levels"]


@hookimpl
def ebm_components():
    return [
        Component("energy", "level_mlp", LevelMLPConfig, LevelMLP.from_config),
        Component("energy", "level_cnn", LevelCNNConfig, LevelCNN.from_config),
        Component("objective", "drl", DRLConfig, DiffusionRecoveryLikelihood.from_config,
                  requires=("energy", "sampler")),
    ]
