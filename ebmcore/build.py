"""Making components: from a name and keyword config, or a whole recipe."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmcore import config as cfg
from ebmcore.errors import EbmError
from ebmcore.registry import ALL_KINDS, Registry


@attrs.define
class BuildContext:
    """What a component cannot know from its own section.

    ``event_shape`` and ``num_classes`` come from the data; ``built`` holds the components
    made so far by kind (an objective takes its energy, sampler and generator from it).
    """

    event_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"), converter=torch.device)
    dtype: torch.dtype = torch.float32
    registry: Registry | None = None
    built: dict[str, Any] = attrs.field(factory=dict)

    def require(self, kind: str, who: str) -> Any:
        """The component of ``kind`` built for this run, or a clear error for ``who``."""
        if kind not in self.built:
            raise EbmError(f"{who} needs a [{kind}] section")
        return self.built[kind]

    def need_event_shape(self, who: str) -> tuple[int, ...]:
        if self.event_shape is None:
            raise EbmError(f"{who} needs the data's event shape: pass "
                           "ctx=BuildContext(event_shape=...) or build it inside a recipe")
        return self.event_shape

    def build(self, kind: str, name: str, config: Any) -> Any:
        """Build a component from a structured config (used by the runner and nesting)."""
        registry = self.registry
        if registry is None:
            from ebmcore.plugins import default_host

            registry = default_host().registry
        return registry.get(kind, name).build(config, self)


def build(kind: str, name: str, *, ctx: BuildContext | None = None,
          registry: Registry | None = None, **config: Any) -> Any:
    """Build a registered component by name, e.g. ``build("sampler", "langevin", step_size=0.01)``.

    Keyword arguments are the recipe section's keys; they are validated exactly as in a
    recipe (errors name ``$.<kind>.<key>``).
    """
    if registry is None:
        from ebmcore.plugins import default_host

        registry = default_host().registry
    if kind not in ALL_KINDS:
        registry.entry(kind, name)  # raises with the list of kinds
    component = registry.get(kind, name)
    path = f"$.tasks.{name}" if kind == "task" else f"$.{kind}"
    structured, problems = cfg.structure(config, component.config, path)
    cfg.raise_problems(problems)
    ctx = ctx or BuildContext()
    ctx.registry = ctx.registry or registry
    return component.build(structured, ctx)
