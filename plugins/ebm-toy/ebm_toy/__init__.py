"""2-D toy data sets and an MLP energy for ebm (MMD² and the density figures are the kit's:
:mod:`ebmcore.kit.metrics`, :mod:`ebmcore.kit.pictures`)."""

from ebm_toy.data import ToyData, ToyDataConfig
from ebm_toy.energies import MLPEnergy, MLPEnergyConfig
from ebmcore import Component, hookimpl

__all__ = ["MLPEnergy", "ToyData"]


@hookimpl
def ebm_components():
    return [
        Component("data", "toy2d", ToyDataConfig, ToyData.from_config),
        Component("energy", "mlp", MLPEnergyConfig, MLPEnergy.from_config),
    ]
