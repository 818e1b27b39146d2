"""2-D toy data sets, an MLP energy, density figures and MMD² for ebm."""

from ebmcore import Component, hookimpl
from ebm_toy.data import ToyData, ToyDataConfig
from ebm_toy.energy import MLPEnergy, MLPEnergyConfig

__all__ = ["MLPEnergy", "ToyData"]


@hookimpl
def ebm_components():
    return [
        Component("data", "toy2d", ToyDataConfig, ToyData.from_config),
        Component("energy", "mlp", MLPEnergyConfig, MLPEnergy.from_config),
    ]
