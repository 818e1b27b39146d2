"""Langevin samplers for ebm: unadjusted (ULA) and Metropolis-adjusted (MALA)."""

from ebm_langevin.langevin import Langevin, LangevinConfig, LangevinInfo, LangevinState
from ebm_langevin.mala import MALA, MALAConfig, MALAInfo, MALAState
from ebmcore import Component, hookimpl

__all__ = ["MALA", "Langevin", "LangevinConfig", "LangevinInfo", "LangevinState", "MALAConfig",
           "MALAInfo", "MALAState"]


@hookimpl
def ebm_components():
    return [Component("sampler", "langevin", LangevinConfig, Langevin.from_config),
            Component("sampler", "mala", MALAConfig, MALA.from_config)]
