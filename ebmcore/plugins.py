"""Finding and loading plugins: entry points of the group ``ebm``, and ``-p MODULE``.

Bundled plugins are loaded exactly like third-party ones. A plugin that fails to import
or raises in ``ebm_components`` is recorded with its distribution name and skipped; the
others keep working.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata as md
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator

import attrs
import pluggy

from ebmcore import hookspecs
from ebmcore.errors import EbmError
from ebmcore.registry import Component, Registry

ENTRY_POINT_GROUP = "ebm"
AUTOLOAD_OFF_ENV = "EBM_DISABLE_PLUGIN_AUTOLOAD"


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str
    version: str


@attrs.frozen
class PluginFailure:
    name: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin '{self.name}' from '{self.distribution}' failed to load: {self.error}"


@attrs.frozen
class HookFault:
    """An observer hook that raised during a run."""

    name: str
    distribution: str
    hook: str
    error: str

    def __str__(self) -> str:
        return (f"plugin '{self.name}' from '{self.distribution}' raised in {self.hook}: {self.error}; "
                f"the run continues without this plugin's {self.hook}")


class PluginHost:
    """The plugin manager, the registry built from it, what failed to load (``failures``)
    and the plugins that provide nothing (``idle``: no component and no observer hook)."""

    def __init__(self, modules: Iterable[str] = (), *, autoload: bool | None = None,
                 plugins: Iterable[object] = ()):
        """Load installed plugins (unless ``autoload`` is off), then ``modules`` by name
        (``-p``), then ``plugins``: objects with hook functions, e.g. in a notebook."""
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_OFF_ENV)
        self.pm = pluggy.PluginManager("ebm")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self.idle: list[PluginInfo] = []
        if autoload:
            self._load_entry_points()
        for module in modules:
            self._load_module(module)
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self._register(plugin, name, f"(object {name})", "?")
        self.registry = self._collect_components()

    def _load_entry_points(self) -> None:
        seen: set[str] = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            # the same distribution can be visible twice on sys.path (editable + --target)
            if (ep.name, dist) in seen:
                continue
            seen.add((ep.name, dist))
            try:
                plugin = ep.load()
                self._register(plugin, ep.name, dist, version)
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
                self.failures.append(PluginFailure(ep.name, dist, _one_line(exc)))

    def _load_module(self, module: str) -> None:
        try:
            plugin = importlib.import_module(module)
            dist = distribution_of(module)
            self._register(plugin, module, dist, md.version(dist) if dist != module else "?")
        except (Exception, SystemExit) as exc:  # SystemExit: a module calling sys.exit at import
            raise EbmError(f"-p {module}: cannot load plugin module: {_one_line(exc)}") from None

    def _register(self, plugin: object, name: str, dist: str, version: str) -> None:
        if self.pm.is_registered(plugin) or self.pm.get_plugin(name) is not None:
            return
        try:  # a hook with a misspelt name or argument is refused with its plugin only
            self.pm.register(plugin, name=name)
            unknown = [h.name for h in self.pm.get_hookcallers(plugin) or () if not h.has_spec()]
            if unknown:
                raise pluggy.PluginValidationError(plugin, f"unknown hook {', '.join(unknown)}")
        except Exception:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            raise
        self.plugins.append(PluginInfo(name, dist, version))

    def distribution_of(self, plugin_name: str) -> str:
        return next((p.distribution for p in self.plugins if p.name == plugin_name), plugin_name)

    def notify(self, hook: str, *, faults: list[HookFault] | None = None, timeout: float | None = None,
               **kwargs: object) -> None:
        """Call each implementation of an observer hook (``ebm_run_start``, ``ebm_step_end``,
        ``ebm_log``, ``ebm_picture``, ``ebm_run_end``) on its own. One that raises (an
        ``Exception``, or ``SystemExit``: a plugin must not end the run) is reported on stderr
        with its distribution, appended to ``faults``, and not called again while its fault is
        in ``faults`` (a run passes its own list); the other plugins and the run go on. One that
        does not return within ``timeout`` seconds (main thread only) raises
        :class:`HookTimeout`. ``KeyboardInterrupt`` is not caught."""
        faults = [] if faults is None else faults
        muted = {(f.name, f.hook) for f in faults}
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):  # pluggy's order
            if (impl.plugin_name, hook) in muted:
                continue
            try:
                with _time_limit(timeout):
                    impl.function(*[kwargs[a] for a in impl.argnames])
            except _Expired:
                raise HookTimeout(f"plugin '{impl.plugin_name}' from '{self.distribution_of(impl.plugin_name)}' "
                                  f"did not return from {hook} within {timeout:g} s (run.hook_timeout_s)") from None
            except (Exception, SystemExit) as exc:  # an observer must not take the run down
                fault = HookFault(impl.plugin_name, self.distribution_of(impl.plugin_name), hook,
                                  _one_line(exc))
                faults.append(fault)
                print(f"warning: {fault}", file=sys.stderr)

    def _collect_components(self) -> Registry:
        """Call each plugin's ``ebm_components`` on its own, to know who provided what."""
        dist_of = {p.name: p.distribution for p in self.plugins}
        registry, provided = Registry(), set()
        for impl in self.pm.hook.ebm_components.get_hookimpls():
            dist = dist_of.get(impl.plugin_name, impl.plugin_name)
            try:
                components = list(impl.function())
                for c in components:
                    if not isinstance(c, Component):
                        raise TypeError(f"ebm_components returned {type(c).__name__}, not Component")
            except (Exception, SystemExit) as exc:
                self.failures.append(PluginFailure(impl.plugin_name, dist, _one_line(exc)))
                provided.add(impl.plugin_name)  # reported as a failure, not as idle
                continue
            for c in components:
                registry.add(c, dist)
                provided.add(impl.plugin_name)
        for info in self.plugins:
            hooks = {h.name for h in self.pm.get_hookcallers(self.pm.get_plugin(info.name)) or ()}
            if info.name not in provided and not hooks - {"ebm_components"}:
                self.idle.append(info)
        return registry


class HookTimeout(EbmError):
    """An observer hook that did not return in time."""


class _Expired(BaseException):
    """Raised in a hook by the alarm: a BaseException, so the hook's ``except Exception`` cannot keep it."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Expired` in the block after ``seconds`` (main thread only: the alarm is a signal)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def distribution_of(module: str) -> str:
    """The installed distribution that provides ``module`` (its own name if none does)."""
    dists = _packages().get(module.split(".")[0])
    return dists[0] if dists else module


@functools.cache
def _packages() -> dict[str, list[str]]:
    return md.packages_distributions()  # reads every installed distribution: once


def _one_line(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" ({where.filename}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{at}"


@functools.cache
def default_host() -> PluginHost:
    """The host used by :func:`ebmcore.build` and :func:`ebmcore.run_recipe`: installed
    plugins, loaded once per process."""
    return PluginHost()
