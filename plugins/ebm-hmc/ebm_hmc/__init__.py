"""Hamiltonian Monte Carlo and the No-U-Turn sampler for ebm, with dual-averaging and window adaptation."""

from ebm_hmc.adaptation import (
    DualAveragingState,
    WindowAdaptationState,
    WindowSchedule,
    dual_averaging_init,
    dual_averaging_update,
    window_init,
    window_schedule,
    window_update,
)
from ebm_hmc.nuts import NUTS, NUTSConfig, NUTSInfo, NUTSState, nuts_kernel
from ebm_hmc.samplers import HMC, HMCConfig, HMCInfo, HMCState, hmc_kernel
from ebmcore import Component, hookimpl

__all__ = ["HMC", "NUTS", "DualAveragingState", "HMCConfig", "HMCInfo", "HMCState", "NUTSConfig", "NUTSInfo",
           "NUTSState", "WindowAdaptationState", "WindowSchedule", "dual_averaging_init", "dual_averaging_update",
           "hmc_kernel", "nuts_kernel", "window_init", "window_schedule", "window_update"]


@hookimpl
def ebm_components():
    return [Component("sampler", "hmc", HMCConfig, HMC.from_config),
            Component("sampler", "nuts", NUTSConfig, NUTS.from_config)]
