"""The one training loop for every objective: build, iterate, optimise, log, checkpoint.

Determinism: the run's seed fixes module initialisation (torch's global RNG, seeded once
before building), the training RNG handed to every component, the data order and each
evaluation's RNG (derived from the seed and the step, so evaluating never shifts
training). Every RNG state is checkpointed, so ``--resume`` continues exactly.

Tasks (``[tasks.<label>]``) are built after the objective and run once after the final
evaluation, each with its own RNG (``task/<label>``); they are not part of the
checkpointed state, and ``ebm eval RUN_DIR`` runs them again on the final checkpoint.

Under ``torchrun`` (see :mod:`ebmcore.train.distributed` and docs/scaling.md) every rank
runs this loop on its own shard of each batch with its own chains, RNG (``train/rank{r}``)
and replay buffer; gradients and metrics are averaged across ranks; only rank 0 writes the
run directory, and its checkpoints hold every rank's own state.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmcore.build import BuildContext
from ebmcore.data import Batch, Data
from ebmcore.errors import EbmError, Interrupted
from ebmcore.interfaces import Objective, Task
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.plugins import PluginHost, default_host
from ebmcore.registry import KINDS
from ebmcore.sampling import nonfinite_chains, sampling_precision
from ebmcore.train import recipe as recipe_mod
from ebmcore.train.devices import check_precision, resolve_device
from ebmcore.train.distributed import World
from ebmcore.train.divergence import Diverged, Divergence, DivergenceGuard, Policy
from ebmcore.train.evaluation import Evaluation, run_tasks
from ebmcore.train.lock import RunLock
from ebmcore.train.log import MetricsLog
from ebmcore.train.observers import Observers
from ebmcore.train.optimise import Optimisers
from ebmcore.train.recipe import Recipe
from ebmcore.train.rundir import claim, recipe_path
from ebmcore.train.seeds import derive_seed, make_rng
from ebmcore.train.signals import deferred_signals, interrupting_signals
from ebmcore.train.state import Checkpoints, TrainState


class Run:
    """A built run: its components, its :class:`TrainState` and the collaborators that train
    it (optimisers, checkpoints, divergence guard and policy, evaluation, observers). Make one
    with :meth:`create` (new or ``resume=True``; then :meth:`train`, :meth:`close`) or
    :meth:`open` (an existing run directory, for sampling and :meth:`run_tasks`)."""

    def __init__(self, recipe: Recipe, host: PluginHost, joined: tuple[World, torch.device] | None = None):
        self.recipe, self.host, c = recipe, host, recipe.run
        self.out = Path(c.out)
        #: this process's rank and the world size (a world of one without torchrun)
        self.world, self.device = joined or join(recipe)
        check_precision(c.precision, self.device)
        check_precision(c.sampling_precision, self.device, "run.sampling_precision")
        torch.manual_seed(derive_seed(c.seed, "init"))
        self.ctx = BuildContext(device=self.device, registry=host.registry)
        self.data, self.objective, self.tasks = build_components(recipe, self.ctx)
        check_samples_fit("$.run.eval_samples", c.eval_samples, self.data.event_shape, self.device)
        self.world.broadcast_parameters(self.objective)
        optimisers = Optimisers(self.objective, recipe.optim, self.world, c.precision, self.device,
                                recipe.sections["objective"].type, total_steps=c.steps)
        rng = make_rng(c.seed, self.world.purpose("train"), self.device)
        # the same data RNG on every rank: one permutation, sharded (ebmcore.Shuffled)
        stream = self.data.stream(make_rng(c.seed, "data", torch.device("cpu")),
                                  rank=self.world.rank, world=self.world.size)
        self.state = TrainState(self.objective, optimisers, stream, rng)
        self.log = MetricsLog(self.out / "metrics.jsonl")
        self.checkpoints = Checkpoints(self.out / "checkpoints", self.world, self.state, self.log, versions(host))
        self.guard = DivergenceGuard(self.device, c.max_abs_energy)
        self.on_divergence = Policy(c, self.guard, self.checkpoints)
        self.notify = Observers(host, self.world, c.hook_timeout_s, self.checkpoints)
        self.evaluate = Evaluation(self.out, self.data, self.objective, self.ctx.built["energy"], self.tasks,
                                   seed=c.seed, samples=c.eval_samples, device=self.device, on_picture=lambda
                                   step, tag, path: self.notify("ebm_picture", run=self, step=step, tag=tag, path=path))
        #: the run directory's lock, held by a run being written (:meth:`create`)
        self.lock: RunLock | None = None

    @property
    def step(self) -> int:
        return self.state.step

    @classmethod
    def create(cls, recipe: Recipe, *, host: PluginHost | None = None, resume: bool = False) -> Run:
        """A new run in ``run.out`` (which must be empty), or the run there continued
        (``resume``); rank 0 holds the directory's lock until :meth:`close`."""
        host = host or default_host()
        out = Path(recipe.run.out)
        world, device = join(recipe)
        # rank 0 owns the run directory; in a world of N the others wait for its verdict
        lock = world.rank0_first(lambda: claim(out, recipe, host.registry, resume=resume))
        try:
            run = cls(recipe, host, (world, device))
            run.lock = lock
            if resume:
                run.checkpoints.restore()
                if run.step > recipe.run.steps:
                    raise EbmError(f"{out}: the run is at step {run.step}, past run.steps = {recipe.run.steps}")
            if world.is_main:
                recipe.write(run.out / "recipe.toml")
        except BaseException:
            if lock is not None:
                lock.release(discard=not resume)  # a new run that failed to start leaves no folder
            raise
        return run

    def close(self) -> None:
        """Release the run directory and leave the process group."""
        if self.lock is not None:
            self.lock.release()
        self.world.leave()

    @classmethod
    def open(cls, out: str | Path, *, host: PluginHost | None = None, overrides: list[str] = ()) -> Run:
        """An existing run directory at its latest checkpoint.

        ``overrides`` (``--set`` strings) change the stored recipe, e.g. a task's settings or
        the sampler's chain length; the checkpoint must still fit the model. The directory
        is ``out`` wherever the run was first written (``run.out`` is set to it).
        """
        host = host or default_host()
        path = recipe_path(Path(out))
        data = recipe_mod.apply_overrides(recipe_mod.read_toml(path), list(overrides))
        data.setdefault("run", {})["out"] = str(out)
        run = cls(recipe_mod.parse_recipe(data, host.registry, source=str(path)), host)
        run.checkpoints.restore(resuming=False)  # opening a run only reads it
        run.objective.eval()  # for sampling and tasks
        return run

    # -- the loop ---------------------------------------------------------------------------

    def train(self, *, progress: bool | None = None) -> dict[str, float]:
        """Train to ``run.steps``; returns the final record (also in metrics.jsonl)."""
        from tqdm import tqdm

        c = self.recipe.run
        self.notify("ebm_run_start", run=self)
        if c.on_divergence == "rollback" and not self.checkpoints.steps():
            self.checkpoints.save()  # something to roll back to
        self.guard.reset()
        t0 = time.perf_counter()
        shown = progress if self.world.is_main else False  # None: when stderr is a terminal
        bar = tqdm(total=c.steps, initial=self.step, disable=None if shown is None else not shown,
                   desc=self.out.name, unit="step", dynamic_ncols=True)
        record: dict[str, float] = {}
        with bar, deferred_signals() as received, self.chains():
            while self.step < c.steps:
                try:
                    record = self.train_step(t0, bar, received) or record
                except Diverged as exc:
                    self.on_divergence(exc.divergence)
                    bar.n = self.step
                    bar.refresh()
            if self.world.is_main:
                record = self._final_record(record)
        if self.tasks and self.world.is_main and "time/tasks_s" not in record:  # a signal ends them at once
            if received:
                raise Interrupted(f"{signal.Signals(received[0]).name} after the final checkpoint (step "
                                  f"{self.step}): the tasks did not run; --resume runs them", received[0])
            t_tasks = time.perf_counter()
            with interrupting_signals("the tasks, after the final checkpoint: --resume runs them"):
                record.update(self.run_tasks())
            record["time/tasks_s"] = round(time.perf_counter() - t_tasks, 3)
            self.log.amend_last(record)
        self.notify("ebm_run_end", run=self, record=record)
        return record

    def _final_record(self, record: dict[str, float]) -> dict[str, float]:
        """The final step's record; a run resumed after the final checkpoint may lack it."""
        steps = self.recipe.run.steps
        if record.get("step") != steps:
            record = self.log.last() or {}
            if record.get("step") != steps:
                record = {"step": steps, **self.evaluate(steps, score=True, picture=True, final=True)}
                self.log.append(record)
        return record

    @contextlib.contextmanager
    def chains(self) -> Iterator[None]:
        """How chains run while training: in the run's sampling precision, and non-finite
        chains left to the divergence guard (which finds them without a host sync)."""
        with sampling_precision(self.recipe.run.sampling_precision), nonfinite_chains("ignore"):
            yield

    def train_step(self, t0: float, bar: Any, received: list[int]) -> dict[str, float] | None:
        """One optimisation step and what is due after it; the record if one was written."""
        c, world, state = self.recipe.run, self.world, self.state
        state.step += 1
        step = state.step
        batch = Batch(*(None if t is None else _to_device(t, self.device) for t in state.stream.next()))
        metrics = state.optimisers.step(batch, state.rng, step)
        # averaged over ranks, with "a rank received a signal": every rank stops at the same step
        metrics, stop = world.reduce_metrics(metrics, bool(received), self.device)
        self.guard.observe(step, metrics)
        self.notify("ebm_step_end", run=self, step=step, metrics=metrics)
        if (found := self.guard.poll()) is not None:  # CPU: this step; accelerator: ≤ 1 step late
            raise Diverged(found)
        last = step == c.steps
        log, ev = step % c.log_every == 0 or last, _due(step, c.eval_every) or last
        pic, ckpt = _due(step, c.sample_every) or last, _due(step, c.checkpoint_every) or last
        if (log or ev or pic or ckpt) and (found := self.guard.settle()) is not None:
            raise Diverged(found)  # nothing is logged or saved from a diverged model
        if last:  # before the final evaluation and pictures: whatever fails there costs no training
            self.checkpoints.save()
        record = None
        if log or ev or pic:
            record = {"step": step, **{k: v.item() for k, v in metrics.items()}, **state.stream.metrics(),
                      "time/elapsed_s": round(time.perf_counter() - t0, 3)}
            if ev or pic:
                bad: Diverged | None = None
                if world.is_main:  # rank 0 evaluates and draws; the others wait for its verdict
                    try:
                        record.update(self.evaluate(step, score=ev, picture=pic, final=last))
                    except Diverged as exc:
                        bad = exc
                if world.any(bad is not None):
                    raise bad or Diverged(Divergence(step, (("fresh samples (rank 0)", math.nan, "non-finite"),)))
            if (log or ev) and world.is_main:
                self.log.append(record)
                self.notify("ebm_log", run=self, step=step, record=record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.startswith("loss/")}, refresh=False)
        if ckpt and not last:
            self.checkpoints.save()
        bar.update(1)
        if stop:
            self._stop_on_signal(received[0] if received else signal.SIGTERM, saved=ckpt)
        return record

    def _stop_on_signal(self, signum: int, *, saved: bool) -> None:
        if (found := self.guard.settle()) is not None:
            self.on_divergence(found)  # stops, or rolls back (then the checkpoint is rewritten)
            saved = False
        if not saved:
            self.checkpoints.save()
        raise Interrupted(f"{signal.Signals(signum).name} at step {self.step}: checkpoint saved in "
                          f"{self.checkpoints.directory}; continue with --resume", signum)

    def run_tasks(self, out: Path | None = None) -> dict[str, float]:
        """Run every task on the current model (:func:`ebmcore.train.evaluation.run_tasks`),
        writing under ``out`` (default the run directory)."""
        return run_tasks(self.tasks, self.objective, self.data, seed=self.recipe.run.seed, device=self.device,
                         out=self.out if out is None else Path(out))


def build_components(recipe: Recipe, ctx: BuildContext) -> tuple[Data, Objective, dict[str, Task]]:
    """The recipe's components in build order (data first: it gives the event shape), then its tasks."""
    for kind in KINDS:
        section = recipe.sections.get(kind)
        if section is None:
            continue
        try:
            obj = ctx.make(kind, section.type, section.config)
        except (ValueError, TypeError) as exc:  # components that do not fit together
            raise EbmError(f"$.{kind}: cannot build {kind} '{section.type}': {exc}") from exc
        ctx.built[kind] = obj
        if kind == "data":
            ctx.event_shape, ctx.num_classes = tuple(obj.event_shape), obj.num_classes
    objective = ctx.built["objective"].to(ctx.device)
    tasks: dict[str, Task] = {}
    for label, section in recipe.tasks.items():
        try:
            tasks[label] = ctx.make("task", section.type, section.config)
        except (ValueError, TypeError, EbmError) as exc:
            raise EbmError(f"$.tasks.{label}: cannot build task '{section.type}': {exc}") from exc
    return ctx.built["data"], objective, tasks


#: copies of its samples a chain holds at once (state, gradient, noise, proposal), for estimates
CHAIN_COPIES = 4


def check_samples_fit(key: str, n: int, event_shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse, naming ``key``, ``n`` chains of ``event_shape`` that would not fit in memory."""
    check_fits(key, tensor_bytes(n, *event_shape) * CHAIN_COPIES, device=device,
               what=f"{n} chains of shape {tuple(event_shape)}, float32, ×{CHAIN_COPIES} for their updates")


def join(recipe: Recipe) -> tuple[World, torch.device]:
    """This process's world (torchrun's environment) and device; joins the process group and
    sets torch's CPU threads where the recipe gives them (process-wide, as OMP_NUM_THREADS)."""
    if recipe.run.threads is not None:
        torch.set_num_threads(recipe.run.threads)
    world = World.from_env()
    device = resolve_device(recipe.run.device, local_rank=world.local_rank if world.distributed else None)
    world.join(device)
    return world, device


def versions(host: PluginHost) -> dict[str, str]:
    out = {"torch": torch.__version__}
    try:
        out["ebmcore"] = md.version("ebmcore")
    except md.PackageNotFoundError:
        out["ebmcore"] = "unknown"
    out.update({p.distribution: p.version for p in host.plugins})
    return out


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    if device.type == "cuda":  # from pinned memory the copy does not wait for the device
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def run_recipe(source: str | Path | dict, *, overrides: list[str] = (), out: str | Path | None = None,
               resume: bool = False, host: PluginHost | None = None,
               progress: bool | None = None) -> dict[str, float]:
    """Run a recipe (a path or a dict) from Python; returns the final record."""
    host = host or default_host()
    data = dict(source) if isinstance(source, dict) else recipe_mod.read_toml(source)
    data = recipe_mod.apply_overrides(data, list(overrides))
    if out is not None and isinstance(data.get("run", {}), dict):  # a path as given, never parsed as TOML
        data["run"] = {**data.get("run", {}), "out": str(out)}
    recipe = recipe_mod.parse_recipe(data, host.registry, source=None if isinstance(source, dict) else str(source))
    run = Run.create(recipe, host=host, resume=resume)
    try:
        return run.train(progress=progress)
    finally:
        run.close()
