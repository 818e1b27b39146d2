"""ebmcore: the contract of the ebm framework.

This package is what a plugin author reads: the interfaces, the registry and hooks, the
plugin host, building components, configs and recipes, and the chain loop. Beside it,
:mod:`ebmcore.kit` holds what plugins may share (conformance checks, metrics with their
yardsticks, pictures, masks, losses) and :mod:`ebmcore.train` the training machinery (the
runner, checkpoints, distributed runs, the ``ebm`` command; :func:`load` reopens a run)."""

from ebmcore.build import BuildContext, build
from ebmcore.data import Batch, Data, Shuffled, Stream
from ebmcore.errors import DivergenceError, EbmError, PluginError, RecipeError
from ebmcore.hookspecs import hookimpl, hookspec
from ebmcore.interfaces import Condition, Energy, Generator, LatentGenerator, Objective, PyramidSampler, Sampler, Task
from ebmcore.kernel import energy_and_grad
from ebmcore.plugins import PluginHost, default_host
from ebmcore.registry import ALL_KINDS, KINDS, Component, Registry
from ebmcore.sampling import run_chain, sampling_mode

__all__ = [
    "ALL_KINDS", "KINDS", "Batch", "BuildContext", "Component", "Condition", "Data", "DivergenceError", "EbmError",
    "Energy", "Generator", "LatentGenerator", "Objective", "PluginError", "PluginHost", "PyramidSampler", "RecipeError",
    "Registry", "Sampler", "Shuffled", "Stream", "Task", "build", "default_host", "energy_and_grad", "hookimpl",
    "hookspec", "load", "run_chain", "sampling_mode",
]


def load(run_dir, **options):
    """A trained run as one object: :meth:`ebmcore.train.model.Model.load` (device, overrides, host)."""
    from ebmcore.train.model import Model  # the contract's one door to the runner: a user's entry point
    return Model.load(run_dir, **options)
