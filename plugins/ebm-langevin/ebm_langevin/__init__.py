"""Langevin samplers for ebm: unadjusted (ULA) and Metropolis-adjusted (MALA)."""

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

__all__ = ["MALA", "Langevin", "LangevinConfig", "LangevinInfo", "LangevinState", "MALAConfig",
           "MALAInfo", "MALAState"]


@hookimpl
def ebm_components():
    return [Component("sampler", "langevin", LangevinConfig, Langevin.from_config),
            Component("sampler", "mala", MALAConfig, MALA.from_config)]
