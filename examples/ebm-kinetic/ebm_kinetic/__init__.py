"""A third-party plugin: a 2-D spiral data set and kinetic Langevin (BAOAB)."""

from ebm_kinetic.baoab import BAOAB, BAOABConfig
from ebm_kinetic.spiral import Spiral, SpiralConfig
from ebmcore import Component, hookimpl


@hookimpl
def ebm_components():
    return [Component("data", "spiral", SpiralConfig, Spiral.from_config, doc="points on a two-turn spiral in [−3, 3]²"),
            Component("sampler", "baoab", BAOABConfig, BAOAB.from_config)]
