"""ebmcore: the interfaces, registry, recipes and runner of the ebm framework.

The core imports no plugin; components come from plugin distributions found through the
entry-point group ``ebm``.
"""

from ebmcore.build import BuildContext, build
from ebmcore.errors import DivergenceError, EbmError, PluginError, RecipeError
from ebmcore.hookspecs import hookimpl, hookspec
from ebmcore.interfaces import Batch, Data, Energy, Generator, Objective, Sampler, Task
from ebmcore.plugins import PluginHost, default_host
from ebmcore.registry import ALL_KINDS, KINDS, Component, Registry
from ebmcore.runner import Run, run_recipe
from ebmcore.sampling import energy_and_grad, latent_langevin, run_chain, sampling_mode

__all__ = [
    "ALL_KINDS", "KINDS", "Batch", "BuildContext", "Component", "Data", "DivergenceError", "EbmError",
    "Energy", "Generator", "Objective", "PluginError", "PluginHost", "RecipeError", "Registry",
    "Run", "Sampler", "Task", "build", "default_host", "energy_and_grad", "hookimpl", "hookspec",
    "latent_langevin", "run_chain", "run_recipe", "sampling_mode",
]
