"""The one training loop for every objective: build, iterate, optimise, log, checkpoint.

Determinism: the run's seed fixes module initialisation (torch's global RNG, seeded once
before building), the training RNG handed to every component, the data order and each
evaluation's RNG (derived from the seed and the step, so evaluating never shifts
training). Every RNG state is checkpointed, so ``--resume`` continues exactly.

Tasks (``[tasks.<label>]``) are built after the objective and run once after the final
evaluation, each with its own RNG (``task/<label>``); they are not part of the
checkpointed state, and ``ebm eval RUN_DIR`` runs them again on the final checkpoint.

Under ``torchrun`` (see :mod:`ebmcore.distributed` and docs/scaling.md) every rank runs
this loop on its own shard of each batch with its own chains, RNG (``train/rank{r}``) and
replay buffer; gradients and metrics are averaged across ranks; only rank 0 writes the
run directory, and its checkpoints hold every rank's own state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from ebmcore import checkpoint
from ebmcore import recipe as recipe_mod
from ebmcore.build import BuildContext
from ebmcore.devices import (
    autocast,
    check_precision,
    resolve_device,
    sampling_precision,
)
from ebmcore.distributed import World
from ebmcore.errors import CheckpointError, DivergenceError, EbmError, Interrupted
from ebmcore.guard import Divergence, DivergenceGuard
from ebmcore.interfaces import Batch, Data, Objective, Task
from ebmcore.plugins import PluginHost, default_host
from ebmcore.recipe import OptimConfig, Recipe
from ebmcore.registry import KINDS

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose ("train", "data", "eval/100"), stable across versions."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_rng(seed: int, purpose: str, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose))


class BatchStream:
    """Epochs of random permutations of the training set; checkpointable mid-epoch.

    In a world of ``world`` ranks every rank draws the same permutation (same RNG) and
    takes its own ``batch_size`` slice of each global batch of ``world × batch_size``: the
    shards are disjoint within an epoch, and the stream's state is the same on every rank.
    """

    def __init__(self, dataset: Batch, batch_size: int, rng: torch.Generator, rank: int = 0, world: int = 1):
        self.x, self.cond = dataset
        self.n = len(self.x)
        if self.n < world:
            raise EbmError("the data set is empty" if self.n == 0 else
                           f"the data set ({self.n} examples) is smaller than the number of ranks ({world})")
        self.batch_size = min(batch_size, self.n // world)
        self.rank = rank
        #: examples consumed per step by all ranks together
        self.global_batch = self.batch_size * world
        self.rng = rng
        self.perm = torch.randperm(self.n, generator=rng)
        self.pos = 0

    def next(self) -> Batch:
        if self.pos + self.global_batch > self.n:
            self.perm = torch.randperm(self.n, generator=self.rng)
            self.pos = 0
        start = self.pos + self.rank * self.batch_size
        idx = self.perm[start:start + self.batch_size]
        self.pos += self.global_batch
        return Batch(self.x[idx], None if self.cond is None else self.cond[idx])

    def state(self) -> dict[str, Tensor]:
        return {"data/perm": self.perm, "data/pos": torch.tensor(self.pos), "rng/data": self.rng.get_state()}

    def restore(self, tensors: dict[str, Tensor]) -> None:
        self.perm = tensors["data/perm"]
        self.pos = int(tensors["data/pos"])
        self.rng.set_state(tensors["rng/data"])


class Run:
    """A built run: components, optimizers, RNGs and the run directory.

    Make one with :meth:`create` (new or ``resume=True``) or :meth:`open` (an existing run
    directory, for sampling and :meth:`run_tasks`), then call :meth:`train`.
    """

    def __init__(self, recipe: Recipe, host: PluginHost,
                 joined: tuple[World, torch.device] | None = None):
        self.recipe = recipe
        self.host = host
        self.out = Path(recipe.run.out)
        #: this process's rank and the world size (a world of one without torchrun)
        self.world, self.device = joined or _join(recipe)
        check_precision(recipe.run.precision, self.device)
        check_precision(recipe.run.sampling_precision, self.device, "run.sampling_precision")
        self.step = 0
        torch.manual_seed(derive_seed(recipe.run.seed, "init"))
        self.ctx = BuildContext(device=self.device, registry=host.registry)
        for kind in KINDS:
            section = recipe.sections.get(kind)
            if section is None:
                continue
            try:
                obj = self.ctx.build(kind, section.type, section.config)
            except (ValueError, TypeError) as exc:  # components that do not fit together
                raise EbmError(f"$.{kind}: cannot build {kind} '{section.type}': {exc}") from exc
            self.ctx.built[kind] = obj
            if kind == "data":
                self.ctx.event_shape = tuple(obj.event_shape)
                self.ctx.num_classes = obj.num_classes
        self.data: Data = self.ctx.built["data"]
        self.objective: Objective = self.ctx.built["objective"].to(self.device)
        self.tasks: dict[str, Task] = {}
        for label, section in recipe.tasks.items():
            try:
                self.tasks[label] = self.ctx.build("task", section.type, section.config)
            except (ValueError, TypeError, EbmError) as exc:
                raise EbmError(f"$.tasks.{label}: cannot build task '{section.type}': {exc}") from exc
        self.world.broadcast_parameters(self.objective)
        self.optimizers = self._make_optimizers()
        self.rng = make_rng(recipe.run.seed, self.world.purpose("train"), self.device)
        self.guard = DivergenceGuard(self.device, recipe.run.max_abs_energy)
        #: divergences rolled back so far (``on_divergence = "rollback"``), checkpointed
        self.rollbacks: list[dict[str, Any]] = []
        #: observer hooks that raised (reported once each, then not called again in this run)
        self.hook_faults: list = []
        # the same data RNG on every rank: one permutation, sharded (see BatchStream)
        self.stream = BatchStream(self.data.dataset(), self.data.batch_size,
                                  make_rng(recipe.run.seed, "data", torch.device("cpu")),
                                  self.world.rank, self.world.size)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, recipe: Recipe, *, host: PluginHost | None = None, resume: bool = False) -> Run:
        host = host or default_host()
        out = Path(recipe.run.out)

        def check() -> None:  # on rank 0, which owns the run directory
            if resume:
                if not (out / "recipe.toml").is_file():
                    raise EbmError(f"{out}: nothing to resume (not a run directory); drop --resume to start it")
                stored = recipe_mod.parse_recipe(recipe_mod.read_toml(out / "recipe.toml"), host.registry,
                                                 source=str(out / "recipe.toml"))
                # tasks are not part of the checkpointed state: they may change too
                changed = recipe_mod.diff(stored, recipe, ignore=("run.steps", "tasks."))
                if changed:
                    raise EbmError(f"{out}: --resume needs the run's own recipe; these keys differ: "
                                   f"{', '.join(changed)} (only run.steps and [tasks.*] may change)")
            elif out.exists() and any(out.iterdir()):
                raise EbmError(f"run directory {out} is not empty: continue it with --resume, "
                               "or choose another with --out DIR")

        world, device = _join(recipe)
        world.rank0_first(check)
        run = cls(recipe, host, (world, device))
        if resume:
            run._restore_latest()
        if world.is_main:
            run.out.mkdir(parents=True, exist_ok=True)
            recipe.write(run.out / "recipe.toml")
        return run

    @classmethod
    def open(cls, out: str | Path, *, host: PluginHost | None = None, overrides: list[str] = ()) -> Run:
        """An existing run directory at its latest checkpoint.

        ``overrides`` (``--set`` strings) change the stored recipe, e.g. a task's settings or
        the sampler's chain length; the checkpoint must still fit the model. The directory
        is ``out`` wherever the run was first written (``run.out`` is set to it).
        """
        host = host or default_host()
        path = Path(out) / "recipe.toml"
        if Path(out).is_file():
            checkpoint.refuse_pickle(Path(out), expected="a run directory")
            raise EbmError(f"{out}: a file, not a run directory (expected the directory `ebm run` wrote, "
                           "with recipe.toml and checkpoints/)")
        if not path.is_file():
            raise EbmError(f"{out}: not a run directory (no recipe.toml)")
        data = recipe_mod.apply_overrides(recipe_mod.read_toml(path), list(overrides))
        data.setdefault("run", {})["out"] = str(out)
        recipe = recipe_mod.parse_recipe(data, host.registry, source=str(path))
        run = cls(recipe, host)
        run._restore_latest(truncate=False)  # opening a run only reads it
        run.objective.eval()  # for sampling and tasks
        return run

    def _make_optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, OptimConfig]]:
        groups = self.objective.param_groups()
        extra = set(self.recipe.optim) - set(groups)
        if extra:
            raise EbmError(f"$.optim: no parameter group {', '.join(sorted(extra))}; objective "
                           f"'{self.recipe.sections['objective'].type}' trains: {', '.join(groups)}")
        out = {}
        for name, module in groups.items():
            c = self.recipe.optim.get(name, OptimConfig())
            params = [p for p in module.parameters() if p.requires_grad]
            kw: dict[str, Any] = {"lr": c.lr, "weight_decay": c.weight_decay}
            if c.type == "sgd":
                kw["momentum"] = c.momentum
            else:
                kw["betas"] = c.betas
            out[name] = (_OPTIMIZERS[c.type](params, **kw), c)
        return out

    # -- checkpoints ----------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def _rank_state(self) -> dict[str, Tensor]:
        """What differs between ranks: the objective's buffers (replay buffers…), not its
        parameters, and the RNG states."""
        own = {f"model/{k}": v for k, v in self.objective.state_dict(keep_vars=True).items()
               if not isinstance(v, torch.nn.Parameter)}
        own["rng/train"] = self.rng.get_state()
        own["rng/torch"] = torch.get_rng_state()
        return {k: v.detach() for k, v in own.items()}

    def save_checkpoint(self) -> None:
        """Write a checkpoint (rank 0); in a world of N, a collective: rank r's own state
        (:meth:`_rank_state`) goes into rank 0's file as ``rank{r}/<key>``."""
        world = self.world
        if world.distributed:
            own = self._rank_state()
            bad = [k for k, v in own.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if world.any(bool(bad)):
                what = bad[:5] or ["state of another rank"]
                raise _Diverged(Divergence(self.step, tuple((k, math.nan, "non-finite") for k in what)))
            gathered = world.gather_tensors(own)
            hashes = world.parameter_hashes(self.objective)
            if len(set(hashes)) > 1:
                raise EbmError(f"step {self.step}: the ranks' parameters differ (SHA-256 {', '.join(h[:12] for h in hashes)}); "
                               "a component changed parameters outside the optimizer step")
            if not world.is_main:
                return
        tensors = {f"model/{k}": v for k, v in self.objective.state_dict().items()}
        meta: dict[str, Any] = {"optim": {}, "versions": _versions(self.host)}
        if world.distributed:
            for r, own in enumerate(gathered[1:], start=1):
                tensors.update({f"rank{r}/{k}": v for k, v in own.items()})
            meta["world_size"] = world.size
            meta["parameter_sha256"] = hashes
        for name, (opt, _) in self.optimizers.items():
            t, m = checkpoint.optimizer_state(opt, f"optim/{name}")
            tensors.update(t)
            meta["optim"][name] = m
        tensors.update(self.stream.state())
        tensors["rng/train"] = self.rng.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        # the states themselves are exact bytes in the tensor file; the sidecar says where
        meta["rng_states"] = sorted(k for k in tensors if k.startswith("rng/"))
        meta["data_order"] = {"permutation": "data/perm", "position": self.stream.pos, "size": self.stream.n,
                              "global_batch": self.stream.global_batch}
        meta["rollbacks"] = self.rollbacks
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # e.g. a replay buffer of exploded samples: never save a diverged model
            raise _Diverged(Divergence(self.step, tuple((k, math.nan, "non-finite") for k in bad[:5])))
        checkpoint.save(self.checkpoint_dir, self.step, tensors, meta)

    def _load_latest(self, before: int | None) -> tuple[int, dict[str, Tensor], dict[str, Any]]:
        """The latest checkpoint: rank 0 reads (and checks) it and sends it to the others,
        which need not see its file system; rank r > 0 takes its own ``rank{r}/`` state."""
        world = self.world
        if not world.distributed:
            return checkpoint.load_latest(self.checkpoint_dir, before=before)

        def read() -> tuple[bytes, bytes]:
            step, tensors, meta = checkpoint.load_latest(self.checkpoint_dir, before=before)
            return safetensors.torch.save(tensors), json.dumps({"step": step, **meta}).encode()

        blob, side = world.rank0_first(read) or (None, None)
        blob, side = world.broadcast_bytes(blob), world.broadcast_bytes(side)
        tensors, meta = safetensors.torch.load(blob), json.loads(side)
        if not world.is_main:
            prefix = f"rank{world.rank}/"
            tensors.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        tensors = {k: v for k, v in tensors.items() if not re.match(r"rank\d+/", k)}
        return meta["step"], tensors, meta

    def _restore_latest(self, *, truncate: bool = True, before: int | None = None) -> None:
        step, tensors, meta = self._load_latest(before)
        if truncate and meta.get("world_size", 1) != self.world.size:  # resuming (opening is fine)
            raise CheckpointError(f"{self.checkpoint_dir}: step {step} was written by "
                                  f"{meta.get('world_size', 1)} process(es), each with its own chains and "
                                  f"RNG; resume it with as many (torchrun --nproc-per-node), not {self.world.size}")
        model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        try:
            self.objective.load_state_dict(model)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.checkpoint_dir}: checkpoint does not fit the recipe's model: "
                                  f"{str(exc).splitlines()[0]}") from None
        for name, (opt, _) in self.optimizers.items():
            checkpoint.restore_optimizer(opt, f"optim/{name}", tensors, meta["optim"][name])
        self.stream.restore(tensors)
        self.rng.set_state(tensors["rng/train"])
        torch.set_rng_state(tensors["rng/torch"])
        self.rollbacks = list(meta.get("rollbacks", []))
        self.step = step
        if truncate and self.world.is_main:
            _truncate_metrics(self.out / "metrics.jsonl", step)

    # -- the loop ---------------------------------------------------------------------------

    def train(self, *, progress: bool | None = None) -> dict[str, float]:
        """Train to ``run.steps``; returns the final record (also in metrics.jsonl)."""
        from tqdm import tqdm

        cfg = self.recipe.run
        world = self.world
        self._notify("ebm_run_start", run=self)
        if cfg.on_divergence == "rollback" and not self._checkpoint_steps():
            self.save_checkpoint()  # something to roll back to
        self.guard.reset()
        t0 = time.perf_counter()
        if not world.is_main:
            progress = False
        bar = tqdm(total=cfg.steps, initial=self.step, disable=None if progress is None else not progress,
                   desc=self.out.name, unit="step", dynamic_ncols=True)
        record: dict[str, float] = {}
        with bar, _deferred_signals() as received, sampling_precision(cfg.sampling_precision):
            while self.step < cfg.steps:
                try:
                    record = self._train_step(t0, bar, received) or record
                except _Diverged as exc:
                    self._on_divergence(exc.divergence)
                    bar.n = self.step
                    bar.refresh()
        if self.tasks and record.get("step") == cfg.steps and world.is_main:
            # after the final checkpoint, so a failing task never costs the training
            t_tasks = time.perf_counter()
            record.update(self.run_tasks())
            record["time/tasks_s"] = round(time.perf_counter() - t_tasks, 3)
            _amend_last_record(self.out / "metrics.jsonl", record)
        self._notify("ebm_run_end", run=self, record=record)
        return record

    def _train_step(self, t0: float, bar: Any, received: list[int]) -> dict[str, float] | None:
        """One optimisation step and what is due after it; the record if one was written."""
        cfg = self.recipe.run
        self.step += 1
        step = self.step
        batch = Batch(*(None if t is None else self._to_device(t) for t in self.stream.next()))
        metrics = self._optimise(batch)
        # averaged over ranks, with "a rank received a signal": every rank stops at the same step
        metrics, stop = self._reduce(metrics, bool(received))
        self.guard.observe(step, metrics)
        self._notify("ebm_step_end", run=self, step=step, metrics=metrics)
        if (found := self.guard.poll()) is not None:  # CPU: this step; accelerator: ≤ 1 step late
            raise _Diverged(found)
        last = step == cfg.steps
        log, ev = step % cfg.log_every == 0 or last, _due(step, cfg.eval_every) or last
        pic, ckpt = _due(step, cfg.sample_every) or last, _due(step, cfg.checkpoint_every) or last
        if (log or ev or pic or ckpt) and (found := self.guard.settle()) is not None:
            raise _Diverged(found)  # nothing is logged or saved from a diverged model
        record = None
        if log or ev or pic:
            record = {"step": step, **{k: v.item() for k, v in metrics.items()},
                      "time/elapsed_s": round(time.perf_counter() - t0, 3)}
            if ev or pic:
                bad: _Diverged | None = None
                if self.world.is_main:  # rank 0 evaluates and draws; the others wait for its verdict
                    try:
                        record.update(self._evaluate(step, score=ev, picture=pic, final=last))
                    except _Diverged as exc:
                        bad = exc
                if self.world.any(bad is not None):
                    raise bad or _Diverged(Divergence(step, (("fresh samples (rank 0)", math.nan, "non-finite"),)))
            if (log or ev) and self.world.is_main:
                self._log(record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.startswith("loss/")},
                                refresh=False)
        if ckpt:
            self.save_checkpoint()
        bar.update(1)
        if stop:
            self._stop_on_signal(received[0] if received else signal.SIGTERM, saved=ckpt)
        return record

    def _to_device(self, t: Tensor) -> Tensor:
        if self.device.type == "cuda":  # from pinned memory the copy does not wait for the device
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _reduce(self, metrics: dict[str, Tensor], stop: bool) -> tuple[dict[str, Tensor], bool]:
        """The step's metrics averaged over ranks, and whether any rank must stop (one all-reduce)."""
        if not self.world.distributed:
            return metrics, stop
        keys = list(metrics)
        flat = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]
                           + [torch.tensor(float(stop), device=self.device)])
        self.world.mean_(flat)
        return dict(zip(keys, flat[:-1].unbind())), bool(flat[-1] > 0)

    def _on_divergence(self, found: Divergence) -> None:
        """Stop (raise :class:`DivergenceError`) or roll back to the last good checkpoint."""
        cfg = self.recipe.run
        kept = [s for s in self._checkpoint_steps() if s < found.step]
        what = f"training diverged at step {found.step}: {found.describe()}"
        if cfg.on_divergence == "rollback" and len(self.rollbacks) >= cfg.max_rollbacks:
            what += f" (after {len(self.rollbacks)} rollbacks, run.max_rollbacks)"
        elif cfg.on_divergence == "rollback" and kept:
            rollbacks = self.rollbacks
            self._restore_latest(before=found.step)
            scale = cfg.rollback_lr_factor ** (len(rollbacks) + 1)
            self.rollbacks = rollbacks + [{"step": found.step, "to": self.step, "lr_scale": scale,
                                           "why": found.describe()}]
            for name, (opt, c) in self.optimizers.items():
                for group in opt.param_groups:
                    group["lr"] = c.lr * scale
            self.guard.reset()
            if self.world.is_main:
                print(f"warning: {what}; rolled back to step {self.step}, learning rates × {scale:g} "
                      f"(rollback {len(self.rollbacks)} of {cfg.max_rollbacks})", file=sys.stderr)
            return
        keep = f"the last good checkpoint is step {kept[-1]}" if kept else "no checkpoint was written yet"
        raise DivergenceError(f"{what}; stopped, {keep} (in {self.checkpoint_dir})")

    def _checkpoint_steps(self) -> list[int]:
        """The committed checkpoints, as rank 0 sees them (the same answer on every rank)."""
        steps = checkpoint.steps(self.checkpoint_dir) if self.world.is_main else None
        if not self.world.distributed:
            return steps
        return json.loads(self.world.broadcast_bytes(json.dumps(steps).encode() if self.world.is_main else None))

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if not self.world.is_main:  # observers see the reduced metrics, once
            return
        self.host.notify(hook, faults=self.hook_faults, **kwargs)

    def run_tasks(self, out: Path | None = None) -> dict[str, float]:
        """Run every task on the current model; write ``tasks.json`` (label → metrics) and
        the tasks' pictures under ``out`` (default the run directory); return the metrics
        as ``<label>/<metric>``."""
        out = self.out if out is None else Path(out)
        self.objective.eval()
        results: dict[str, dict[str, float]] = {}
        for label, task in self.tasks.items():
            folder = out / "tasks" / label
            folder.mkdir(parents=True, exist_ok=True)
            rng = make_rng(self.recipe.run.seed, f"task/{label}", self.device)
            metrics = task.run(self.objective, self.data, rng=rng, out=folder)
            results[label] = {k: float(v) for k, v in metrics.items()}
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write(out / "tasks.json", (json.dumps(results, indent=1) + "\n").encode())
        return {f"{label}/{k}": v for label, m in results.items() for k, v in m.items()}

    def _optimise(self, batch: Batch) -> dict[str, Tensor]:
        self.objective.train()
        with autocast(self.recipe.run.precision, self.device):  # chains stay fp32: ebmcore.devices
            losses, metrics = self.objective.loss(batch, rng=self.rng)
        out = {f"loss/{g}": loss.detach() for g, loss in losses.items()}
        out.update({k: v.detach() for k, v in metrics.items()})
        groups = [g for g in self.optimizers if g in losses]
        params = {g: [p for group in self.optimizers[g][0].param_groups for p in group["params"]] for g in groups}
        # every gradient first, then every step: a loss whose graph runs through another
        # group's parameters (a two-player game) sees them as they were, whatever the order
        for i, name in enumerate(groups):
            self.optimizers[name][0].zero_grad(set_to_none=True)
            # each loss updates its own group only, even when the graphs overlap
            torch.autograd.backward(losses[name], inputs=params[name], retain_graph=i < len(groups) - 1)
        for name in groups:
            opt, c = self.optimizers[name]
            self.world.reduce_grads(params[name])  # the group's gradient averaged over ranks
            norm = torch.nn.utils.clip_grad_norm_(params[name], c.grad_clip if c.grad_clip else math.inf)
            out[f"grad_norm/{name}"] = norm.detach()
            opt.step()
        return out

    def _stop_on_signal(self, signum: int, *, saved: bool) -> None:
        if (found := self.guard.settle()) is not None:
            self._on_divergence(found)  # stops, or rolls back (then the checkpoint is rewritten)
            saved = False
        if not saved:
            self.save_checkpoint()
        raise Interrupted(f"{signal.Signals(signum).name} at step {self.step}: checkpoint saved in "
                          f"{self.checkpoint_dir}; continue with --resume", signum)

    def _evaluate(self, step: int, *, score: bool, picture: bool, final: bool) -> dict[str, float]:
        """Fresh-chain samples: scored, drawn, and at the end saved with the run's figures."""
        cfg = self.recipe.run
        rng = make_rng(cfg.seed, f"eval/{step}", self.device)
        # eval mode: sampling must not change the model (BatchNorm's running statistics in a
        # generator) and uses what a trained model uses; the next step sets train mode again
        self.objective.eval()
        samples = self.objective.sample(cfg.eval_samples, rng=rng).cpu()
        if not torch.isfinite(samples).all():
            raise _Diverged(Divergence(step, (("fresh samples", math.nan, "non-finite"),)))
        if picture:
            (self.out / "samples").mkdir(exist_ok=True)
            self.data.save_samples(samples, self.out / "samples" / f"step-{step:06d}.png")
        if final:
            self.data.save_samples(samples, self.out / "samples.png")
            checkpoint.atomic_write(self.out / "samples.safetensors", safetensors.torch.save({"x": samples}))
            self.data.report(self.out, samples, self.ctx.built["energy"])
        return self.data.evaluate(samples) if score else {}

    def _log(self, record: dict[str, float]) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self._notify("ebm_log", run=self, step=record["step"], record=record)


class _Diverged(Exception):
    """Raised inside a step; the loop applies ``run.on_divergence``."""

    def __init__(self, divergence: Divergence):
        super().__init__(divergence.describe())
        self.divergence = divergence


@contextlib.contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM are noted and acted on between steps, so the checkpoint written on the
    way out is of a completed step; a second signal interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def note(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    for s in previous:
        signal.signal(s, note)
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _join(recipe: Recipe) -> tuple[World, torch.device]:
    """This process's world (torchrun's environment) and device; joins the process group."""
    world = World.from_env()
    device = resolve_device(recipe.run.device, local_rank=world.local_rank if world.distributed else None)
    world.join(device)
    return world, device


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _amend_last_record(path: Path, record: dict[str, float]) -> None:
    """Replace the last line of metrics.jsonl (the final step's record) by ``record``."""
    lines = path.read_text().splitlines(keepends=True)
    if not lines or json.loads(lines[-1])["step"] != record["step"]:
        raise EbmError(f"{path}: the last record is not step {record['step']}")
    lines[-1] = json.dumps(record) + "\n"
    checkpoint.atomic_write(path, "".join(lines).encode())


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (and a line torn by a crash)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: its step is after the checkpoint anyway
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            keep.append(line + "\n")
    checkpoint.atomic_write(path, "".join(keep).encode())


def _versions(host: PluginHost) -> dict[str, str]:
    import importlib.metadata as md

    out = {"torch": torch.__version__}
    try:
        out["ebmcore"] = md.version("ebmcore")
    except md.PackageNotFoundError:
        out["ebmcore"] = "unknown"
    out.update({p.distribution: p.version for p in host.plugins})
    return out


def run_recipe(source: str | Path | dict, *, overrides: list[str] = (), out: str | None = None,
               resume: bool = False, host: PluginHost | None = None,
               progress: bool | None = None) -> dict[str, float]:
    """Run a recipe (a path or a dict) from Python; returns the final record."""
    host = host or default_host()
    overrides = list(overrides) + ([f"run.out={json.dumps(str(out))}"] if out else [])
    if isinstance(source, dict):
        recipe = recipe_mod.parse_recipe(recipe_mod.apply_overrides(source, overrides), host.registry)
    else:
        recipe = recipe_mod.load_recipe(source, host.registry, overrides)
    run = Run.create(recipe, host=host, resume=resume)
    try:
        return run.train(progress=progress)
    finally:
        run.world.leave()
