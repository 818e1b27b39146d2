"""Making components: from a name and its settings, or a recipe's sections."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmcore import config as cfg
from ebmcore.data import Data
from ebmcore.errors import EbmError, PluginError
from ebmcore.interfaces import Energy, Generator, Objective, Sampler, Task
from ebmcore.plugins import default_host
from ebmcore.registry import Registry

#: what a component of each kind must be
INTERFACES = {"data": Data, "energy": Energy, "sampler": Sampler, "generator": Generator,
              "objective": Objective, "task": Task}


@attrs.define
class BuildContext:
    """What a component cannot know from its own section, and where it builds others.

    ``event_shape`` and ``num_classes`` come from the data; ``built`` holds the components
    made so far by kind (an objective takes its energy, sampler and generator from it);
    ``registry`` is what this run may build (default: the installed plugins): a component
    that builds another by name does it through the context it was given."""

    event_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"), converter=torch.device)
    dtype: torch.dtype = torch.float32
    registry: Registry = attrs.field(factory=lambda: default_host().registry)
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

    def make(self, kind: str, name: str, config: Any) -> Any:
        """Build a component from its structured (validated) config."""
        entry = self.registry.entry(kind, name)
        try:
            obj = entry.component.build(config, self)
        except (EbmError, ValueError, TypeError):
            raise  # bad input, or components that do not fit together: the caller names the section
        except Exception as exc:  # a plugin's bug: named with its distribution, not a traceback
            raise PluginError(f"{kind} '{name}' of '{entry.distribution}' failed to build: "
                              f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        if not isinstance(obj, INTERFACES[kind]):
            raise PluginError(f"{kind} '{name}' of '{entry.distribution}' built a {type(obj).__name__}, "
                              f"not an ebmcore.{INTERFACES[kind].__name__}")
        return obj

    def build(self, kind: str, name: str, /, **settings: Any) -> Any:
        """Build a component from its settings (a recipe section's keys without ``type``),
        validated as in a recipe: errors name ``$.<kind>.<key>``."""
        component = self.registry.get(kind, name)
        path = f"$.tasks.{name}" if kind == "task" else f"$.{kind}"
        return self.make(kind, name, cfg.structured(settings, component.config, path))


def build(kind: str, name: str, /, **settings: Any) -> Any:
    """Build an installed component by name, e.g. ``build("sampler", "langevin", step_size=0.01)``
    (``BuildContext(...).build`` for a given data shape, device or registry)."""
    return BuildContext().build(kind, name, **settings)
