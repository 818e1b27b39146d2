"""The plugins' observer hooks during a run: called on rank 0 only (observers see the
reduced metrics, once), each within ``run.hook_timeout_s``."""

from __future__ import annotations

from typing import Any

from ebmcore.plugins import HookFault, HookTimeout, PluginHost
from ebmcore.train.distributed import World
from ebmcore.train.state import Checkpoints


class Observers:
    """``observers(hook, **kwargs)`` calls every plugin's ``hook``. One that raises is reported
    and muted for the rest of the run (:meth:`PluginHost.notify`); one that does not return
    in time stops the run with a checkpoint of the current step."""

    def __init__(self, host: PluginHost, world: World, timeout: float, checkpoints: Checkpoints):
        self.host, self.world, self.timeout, self.checkpoints = host, world, timeout, checkpoints
        #: hooks that raised (reported once each, then not called again in this run)
        self.faults: list[HookFault] = []

    def __call__(self, hook: str, **kwargs: Any) -> None:
        if not self.world.is_main:
            return
        try:
            self.host.notify(hook, faults=self.faults, timeout=self.timeout, **kwargs)
        except HookTimeout as exc:
            step = self.checkpoints.state.step
            if step > 0:
                self.checkpoints.save()
            raise HookTimeout(f"{exc}; stopped at step {step}, checkpoint saved: continue with --resume "
                              "once the plugin is fixed or removed") from None
