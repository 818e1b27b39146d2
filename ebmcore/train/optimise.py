"""The optimizers of an objective's parameter groups, and one optimisation step."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmcore.data import Batch
from ebmcore.errors import EbmError
from ebmcore.interfaces import Objective
from ebmcore.train import checkpoint
from ebmcore.train.devices import autocast
from ebmcore.train.distributed import World
from ebmcore.train.recipe import OptimConfig

def _step_at(opt: torch.optim.Optimizer, factor: float) -> None:
    """One step at ``factor`` × the learning rates; the optimizer keeps its own, so that a
    checkpoint holds the configured rates whatever the step."""
    rates = [group["lr"] for group in opt.param_groups]
    for group, lr in zip(opt.param_groups, rates, strict=True):
        group["lr"] = lr * factor
    opt.step()
    for group, lr in zip(opt.param_groups, rates, strict=True):
        group["lr"] = lr


_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class Optimisers:
    """One optimizer per parameter group, configured by ``[optim.<group>]``."""

    def __init__(self, objective: Objective, configs: dict[str, OptimConfig], world: World, precision: str,
                 device: torch.device, objective_name: str, total_steps: int | None = None):
        self.objective, self.world, self.precision, self.device = objective, world, precision, device
        self.total_steps = total_steps
        groups = objective.param_groups()
        extra = set(configs) - set(groups)
        if extra:
            raise EbmError(f"$.optim: no parameter group {', '.join(sorted(extra))}; objective "
                           f"'{objective_name}' trains: {', '.join(groups)}")
        self.groups: dict[str, tuple[torch.optim.Optimizer, OptimConfig]] = {}
        for name, module in groups.items():
            c = configs.get(name, OptimConfig())
            params = [p for p in module.parameters() if p.requires_grad]
            kw: dict[str, Any] = {"lr": c.lr, "weight_decay": c.weight_decay}
            if c.type == "sgd":
                kw["momentum"] = c.momentum
            else:
                kw["betas"] = c.betas
            self.groups[name] = (_OPTIMIZERS[c.type](params, **kw), c)

    def step(self, batch: Batch, rng: torch.Generator, update: int) -> dict[str, Tensor]:
        """The objective's losses, every group's gradient, then every group's step (``update``,
        counted from 1, sets the warm-up); returns the step's metrics (losses, the objective's
        metrics, ``grad_norm/<group>``)."""
        self.objective.train()
        with autocast(self.precision, self.device):  # chains stay fp32: ebmcore.sampling
            losses, metrics = self.objective.loss(batch, rng=rng)
        out = {f"loss/{g}": loss.detach() for g, loss in losses.items()}
        out.update({k: v.detach() for k, v in metrics.items()})
        names = [g for g in self.groups if g in losses]
        params = {g: [p for group in self.groups[g][0].param_groups for p in group["params"]] for g in names}
        # every gradient first, then every step: a loss whose graph runs through another
        # group's parameters (a two-player game) sees them as they were, whatever the order
        for i, name in enumerate(names):
            self.groups[name][0].zero_grad(set_to_none=True)
            # each loss updates its own group only, even when the graphs overlap
            torch.autograd.backward(losses[name], inputs=params[name], retain_graph=i < len(names) - 1)
        for name in names:
            opt, c = self.groups[name]
            self.world.reduce_grads(params[name])  # the group's gradient averaged over ranks
            norm = torch.nn.utils.clip_grad_norm_(params[name], c.grad_clip if c.grad_clip else math.inf)
            out[f"grad_norm/{name}"] = norm.detach()
            factor = self.lr_factor(c, update)
            if factor == 1.0:
                opt.step()
            else:
                _step_at(opt, factor)
        return out

    def lr_factor(self, c: OptimConfig, update: int) -> float:
        """The learning rate of ``update`` (counted from 1) over the configured one: the
        warm-up's rise, the cool-down's fall over the last ``cooldown_steps`` of the run."""
        factor = update / c.warmup_steps if c.warmup_steps and update < c.warmup_steps else 1.0
        if c.cooldown_steps and self.total_steps is not None:
            left = self.total_steps - update + 1  # 1 at the last update
            if left <= c.cooldown_steps:
                factor *= max(left, 1) / c.cooldown_steps
        return factor

    def scale_lr(self, scale: float) -> None:
        """Every group's learning rate set to its configured one × ``scale`` (after a rollback)."""
        for opt, c in self.groups.values():
            for group in opt.param_groups:
                group["lr"] = c.lr * scale

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {}
        for name, (opt, _) in self.groups.items():
            t, meta[name] = checkpoint.optimizer_state(opt, f"optim/{name}")
            tensors.update(t)
        return tensors, meta

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any], lr_scale: float = 1.0) -> None:
        """Load the optimizers' state; their settings must be the recipe's (learning rates ×
        ``lr_scale``, the rollbacks' scale): a checkpoint cannot change them."""
        for name, (opt, c) in self.groups.items():
            if name not in meta:
                raise ValueError(f"no state for the optimizer of group '{name}'")
            want = [{k: v for k, v in g.items() if k != "params"} | {"lr": c.lr * lr_scale}
                    for g in opt.param_groups]
            checkpoint.restore_optimizer(opt, f"optim/{name}", tensors, meta[name])
            for w, g in zip(want, opt.param_groups, strict=True):
                for key, value in w.items():
                    if g.get(key) != value:
                        raise ValueError(f"optimizer '{name}': {key} is {g.get(key)!r} in the checkpoint, "
                                         f"the recipe gives {value!r}")
