"""Multigrid and coarse-to-fine sampling and learning for ebm."""

from ebm_multiscale.data import Stripes, StripesConfig
from ebm_multiscale.energies import MultiScaleEnergy, MultiScaleEnergyConfig
from ebm_multiscale.objectives import MultiScaleMLE, MultiScaleMLEConfig
from ebm_multiscale.samplers import CoarseToFine, CoarseToFineConfig, Multigrid, MultigridConfig, Pyramid
from ebmcore import Component, hookimpl

__all__ = ["CoarseToFine", "MultiScaleEnergy", "MultiScaleMLE", "Multigrid", "Pyramid", "Stripes"]


@hookimpl
def ebm_components():
    return [
        Component("data", "stripes", StripesConfig, Stripes.from_config),
        Component("energy", "multiscale", MultiScaleEnergyConfig, MultiScaleEnergy.from_config),
        Component("sampler", "multigrid", MultigridConfig, Multigrid.from_config),
        Component("sampler", "coarse_to_fine", CoarseToFineConfig, CoarseToFine.from_config),
        Component("objective", "mle_multiscale", MultiScaleMLEConfig, MultiScaleMLE.from_config,
                  requires=("energy", "sampler", "generator")),
    ]
