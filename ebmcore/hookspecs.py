"""The hooks of ebm. A plugin implements any of them with ``@ebmcore.hookimpl``.

Under ``torchrun`` only rank 0 calls the observer hooks (``ebm_run_start``, ``ebm_step_end``,
``ebm_log``, ``ebm_picture``, ``ebm_run_end``), with metrics averaged over ranks (docs/scaling.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ebmcore.registry import Component

hookspec = pluggy.HookspecMarker("ebm")
hookimpl = pluggy.HookimplMarker("ebm")


@hookspec
def ebm_components() -> list[Component]:
    """Called once when plugins load. Return the components this plugin provides.

    Each :class:`~ebmcore.Component` names its kind (``data``, ``energy``, ``sampler``,
    ``generator``, ``objective``), its name in recipes, its config class (the recipe
    section's schema) and a ``build(config, ctx)`` function.
    """


@hookspec
def ebm_run_start(run: Any) -> None:
    """Called after a run is built (or resumed), before its first step.

    ``run`` is the :class:`~ebmcore.train.Run`: ``run.out``, ``run.recipe``,
    ``run.objective``, ``run.data``, ``run.tasks``, ``run.step``.
    """


@hookspec
def ebm_step_end(run: Any, step: int, metrics: dict[str, Any]) -> None:
    """Called after every optimisation step with that step's metrics as 0-d tensors.

    Converting a tensor to a float forces a host sync: do it only when you need it.
    """


@hookspec
def ebm_log(run: Any, step: int, record: dict[str, float]) -> None:
    """Called with each record written to ``metrics.jsonl`` (plain floats)."""


@hookspec
def ebm_picture(run: Any, step: int, tag: str, path: Path) -> None:
    """Called after the run writes a picture: ``tag`` is ``samples`` for the pictures drawn
    during training, ``final/<name>`` for the end-of-run figures (``final/samples``, and
    each figure :meth:`ebmcore.Data.report` wrote, by file stem)."""


@hookspec
def ebm_run_end(run: Any, record: dict[str, float]) -> None:
    """Called when a run finishes, with the final evaluation record."""
