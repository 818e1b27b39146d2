"""Langevin samplers for ebm: unadjusted (ULA), Metropolis-adjusted (MALA) and annealed."""

from ebm_langevin.annealed import (
    AnnealedLangevin,
    AnnealedLangevinConfig,
    AnnealedLangevinInfo,
    AnnealedLangevinState,
)
from ebm_langevin.samplers import (
    MALA,
    Langevin,
    LangevinConfig,
    LangevinInfo,
    LangevinState,
    MALAConfig,
    MALAInfo,
    MALAState,
)
from ebmcore import Component, hookimpl

__all__ = ["MALA", "AnnealedLangevin", "AnnealedLangevinConfig", "AnnealedLangevinInfo", "AnnealedLangevinState",
           "Langevin", "LangevinConfig", "LangevinInfo", "LangevinState", "MALAConfig", "MALAInfo", "MALAState"]


@hookimpl
def ebm_components():
    return [Component("sampler", "langevin", LangevinConfig, Langevin.from_config),
            Component("sampler", "mala", MALAConfig, MALA.from_config),
            Component("sampler", "annealed_langevin", AnnealedLangevinConfig, AnnealedLangevin.from_config)]
