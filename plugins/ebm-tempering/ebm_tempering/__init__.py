"""Parallel tempering (replica exchange) for ebm, around any registered sampler."""

from ebm_tempering.samplers import (
    ParallelTempering,
    ParallelTemperingConfig,
    ParallelTemperingInfo,
    ParallelTemperingState,
)
from ebmcore import Component, hookimpl

__all__ = ["ParallelTempering", "ParallelTemperingConfig", "ParallelTemperingInfo", "ParallelTemperingState"]


@hookimpl
def ebm_components():
    return [Component("sampler", "parallel_tempering", ParallelTemperingConfig, ParallelTempering.from_config)]
