"""Hamiltonian Monte Carlo for ebm, with dual-averaging step-size adaptation."""

from ebm_hmc.adaptation import DualAveragingState, dual_averaging_init, dual_averaging_update
from ebm_hmc.samplers import HMC, HMCConfig, HMCInfo, HMCState, hmc_kernel
from ebmcore import Component, hookimpl

__all__ = ["HMC", "DualAveragingState", "HMCConfig", "HMCInfo", "HMCState", "dual_averaging_init",
           "dual_averaging_update", "hmc_kernel"]


@hookimpl
def ebm_components():
    return [Component("sampler", "hmc", HMCConfig, HMC.from_config)]
