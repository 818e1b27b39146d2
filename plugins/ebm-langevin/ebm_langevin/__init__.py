"""Langevin samplers for ebm."""

from ebmcore import Component, hookimpl
from ebm_langevin.langevin import Langevin, LangevinConfig, LangevinInfo, LangevinState

__all__ = ["Langevin", "LangevinConfig", "LangevinInfo", "LangevinState"]


@hookimpl
def ebm_components():
    return [Component("sampler", "langevin", LangevinConfig, Langevin.from_config)]
