"""The training machinery: the runner and its collaborators, checkpoints, the divergence
guard, distributed runs, recipes and the ``ebm`` command. Built on the contract
(:mod:`ebmcore`); plugins never need it."""

from ebmcore.train.run import Run, run_recipe

__all__ = ["Run", "run_recipe"]
