"""Components and the registry that finds them by (kind, name)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ebmcore.errors import PluginError, did_you_mean

#: component kinds, spelt as the recipe sections, in build order (one section of each)
KINDS = ("data", "energy", "sampler", "generator", "objective")
#: every kind a component may have: the sections, then ``task`` (any number of
#: ``[tasks.<label>]`` tables, built after the objective and run after training)
ALL_KINDS = (*KINDS, "task")


@attrs.frozen
class Component:
    """A buildable thing a plugin provides.

    ``config`` is an attrs class: the schema of its recipe section (without ``type``).
    ``build(config, ctx)`` makes the object; ``ctx`` is a :class:`~ebmcore.BuildContext`.
    ``requires`` names the recipe sections it needs besides its own.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(ALL_KINDS))
    name: str
    config: type = attrs.field(validator=lambda _i, _a, v: _attrs_class(v))
    build: Callable[[Any, Any], Any]
    requires: tuple[str, ...] = ()
    doc: str = ""

    @property
    def summary(self) -> str:
        """One-line description: ``doc``, else the first line of the config's docstring."""
        text = self.doc or (self.config.__doc__ or "")
        return text.strip().splitlines()[0] if text.strip() else ""


def _attrs_class(config: Any) -> None:
    if not (isinstance(config, type) and attrs.has(config)):
        raise TypeError(f"a component's config must be an attrs class, got {config!r}")


@attrs.frozen
class Entry:
    component: Component
    distribution: str


class Registry:
    """Components by (kind, name), with the distribution that provided each.

    The host owns conflicts: a (kind, name) registered by two distributions is kept out of
    the registry — using it is an error naming both — while every other component works.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self.conflicts: dict[tuple[str, str], list[str]] = {}

    def add(self, component: Component, distribution: str) -> None:
        key = (component.kind, component.name)
        if key in self.conflicts:
            self.conflicts[key] = sorted({*self.conflicts[key], distribution})
        elif key in self._entries:
            self.conflicts[key] = sorted({self._entries.pop(key).distribution, distribution})
        else:
            self._entries[key] = Entry(component, distribution)

    def conflict_message(self, kind: str, name: str) -> str:
        dists = self.conflicts[(kind, name)]
        by = " and ".join(f"by '{d}'" for d in dists)
        return (f"{kind} '{name}' is registered twice: {by}. Uninstall one of them, or start ebm with "
                f"EBM_DISABLE_PLUGIN_AUTOLOAD=1 and load the one you want with -p MODULE.")

    def entry(self, kind: str, name: str) -> Entry:
        if kind not in ALL_KINDS:
            raise PluginError(f"unknown kind '{kind}'{did_you_mean(kind, ALL_KINDS)}; "
                              f"kinds: {', '.join(ALL_KINDS)}")
        if (kind, name) in self.conflicts:
            raise PluginError(self.conflict_message(kind, name))
        found = self._entries.get((kind, name))
        if found is None:
            raise PluginError(self.unknown_message(kind, name))
        return found

    def get(self, kind: str, name: str) -> Component:
        return self.entry(kind, name).component

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self._entries if k == kind)

    def unknown_message(self, kind: str, name: Any) -> str:
        installed = self.names(kind)
        listing = ", ".join(installed) if installed else "none (is a plugin installed?)"
        return f"unknown {kind} '{name}'{did_you_mean(str(name), installed)}; installed: {listing}"

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(),
                           key=lambda e: (ALL_KINDS.index(e.component.kind), e.component.name)))

    def __len__(self) -> int:
        return len(self._entries)
