"""What a checkpoint holds and how a run resumes from it, across ranks.

A run's state is the objective (parameters and buffers: replay buffers, flows…), the
optimizers, the data stream's position, the RNGs and the rollbacks so far. In a world of N
ranks the parameters are the same everywhere and rank 0 writes the file; each rank's own
state (buffers, RNGs) goes into it as ``rank{r}/<key>``, and on resume rank 0 reads the file
and sends it to the others, which need not see its file system.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import attrs
import safetensors.torch
import torch
from torch import Tensor

from ebmcore.data import Stream
from ebmcore.errors import CheckpointError, EbmError
from ebmcore.interfaces import Objective
from ebmcore.train import checkpoint
from ebmcore.train.distributed import World
from ebmcore.train.divergence import Diverged, Divergence
from ebmcore.train.log import MetricsLog
from ebmcore.train.optimise import Optimisers


@attrs.define(eq=False)
class TrainState:
    """Everything training changes, checkpointed together."""

    objective: Objective
    optimisers: Optimisers
    stream: Stream
    rng: torch.Generator
    step: int = 0
    #: divergences rolled back so far (``on_divergence = "rollback"``)
    rollbacks: list[dict[str, Any]] = attrs.field(factory=list)


class Checkpoints:
    """Checkpoint and resume a run's :class:`TrainState` in ``directory``; resuming also drops
    the records ``log`` holds of steps after the checkpoint."""

    def __init__(self, directory: Path, world: World, state: TrainState, log: MetricsLog,
                 versions: dict[str, str]):
        self.directory, self.world, self.state, self.log, self.versions = directory, world, state, log, versions

    def steps(self) -> list[int]:
        """The committed checkpoints, as rank 0 sees them (the same answer on every rank)."""
        world = self.world
        steps = checkpoint.steps(self.directory) if world.is_main else None
        if not world.distributed:
            return steps
        return json.loads(world.broadcast_bytes(json.dumps(steps).encode() if world.is_main else None))

    def _rank_state(self) -> dict[str, Tensor]:
        """What differs between ranks: the objective's buffers, not its parameters, and the RNGs."""
        own = {f"model/{k}": v for k, v in self.state.objective.state_dict(keep_vars=True).items()
               if not isinstance(v, torch.nn.Parameter)}
        own["rng/train"] = self.state.rng.get_state()
        own["rng/torch"] = torch.get_rng_state()
        return {k: v.detach() for k, v in own.items()}

    def save(self) -> None:
        """Write a checkpoint of the current step (a collective in a world of N)."""
        world, state = self.world, self.state
        if world.distributed:
            own = self._rank_state()
            bad = [k for k, v in own.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if world.any(bool(bad)):
                what = bad[:5] or ["state of another rank"]
                raise Diverged(Divergence(state.step, tuple((k, math.nan, "non-finite") for k in what)))
            gathered = world.gather_tensors(own)
            hashes = world.parameter_hashes(state.objective)
            if len(set(hashes)) > 1:
                raise EbmError(f"step {state.step}: the ranks' parameters differ (SHA-256 "
                               f"{', '.join(h[:12] for h in hashes)}); a component changed parameters "
                               "outside the optimizer step")
            if not world.is_main:
                return
        tensors = {f"model/{k}": v for k, v in state.objective.state_dict().items()}
        meta: dict[str, Any] = {"versions": self.versions}
        if world.distributed:
            for r, own in enumerate(gathered[1:], start=1):
                tensors.update({f"rank{r}/{k}": v for k, v in own.items()})
            meta["world_size"] = world.size
            meta["parameter_sha256"] = hashes
        optim_tensors, meta["optim"] = state.optimisers.state()
        tensors.update(optim_tensors)
        stream = state.stream.state()
        tensors.update(stream)
        tensors["rng/train"] = state.rng.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        # the states themselves are exact bytes in the tensor file; the sidecar says where
        meta["rng_states"] = sorted(k for k in tensors if k.startswith("rng/"))
        meta["data_stream"] = sorted(stream)
        meta["rollbacks"] = state.rollbacks
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # e.g. a replay buffer of exploded samples: never save a diverged model
            raise Diverged(Divergence(state.step, tuple((k, math.nan, "non-finite") for k in bad[:5])))
        checkpoint.save(self.directory, state.step, tensors, meta)

    def _load(self, before: int | None) -> tuple[int, dict[str, Tensor], dict[str, Any]]:
        """The latest checkpoint (before step ``before``), this rank's part of it."""
        world = self.world
        if not world.distributed:
            return checkpoint.load_latest(self.directory, before=before)

        def read() -> tuple[bytes, bytes]:
            step, tensors, meta = checkpoint.load_latest(self.directory, before=before)
            return safetensors.torch.save(tensors), json.dumps({"step": step, **meta}).encode()

        blob, side = world.rank0_first(read) or (None, None)
        blob, side = world.broadcast_bytes(blob), world.broadcast_bytes(side)
        tensors, meta = safetensors.torch.load(blob), json.loads(side)
        if not world.is_main:
            prefix = f"rank{world.rank}/"
            tensors.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        tensors = {k: v for k, v in tensors.items() if not re.match(r"rank\d+/", k)}
        return meta["step"], tensors, meta

    def restore(self, *, resuming: bool = True, before: int | None = None) -> None:
        """Load the latest checkpoint (before step ``before``) into the state. ``resuming``:
        to train on, which needs as many ranks as wrote it (opening to sample does not)."""
        step, tensors, meta = self._load(before)
        if resuming and meta.get("world_size", 1) != self.world.size:
            raise CheckpointError(f"{self.directory}: step {step} was written by "
                                  f"{meta.get('world_size', 1)} process(es), each with its own chains and "
                                  f"RNG; resume it with as many (torchrun --nproc-per-node), not {self.world.size}")
        state = self.state
        model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        file = self.directory / f"step-{step:06d}.safetensors"
        try:
            state.objective.load_state_dict(model)
        except RuntimeError as exc:
            raise CheckpointError(f"{file}: checkpoint does not fit the recipe's model: "
                                  f"{str(exc).splitlines()[0]}") from None
        rollbacks = meta.get("rollbacks", [])
        try:  # every part checked: a file edited by hand is refused, not half-loaded with a traceback
            scale = rollbacks[-1]["lr_scale"] if rollbacks else 1.0
            state.optimisers.restore(tensors, meta["optim"], lr_scale=scale)
            state.stream.restore(tensors)
            state.rng.set_state(tensors["rng/train"])
            torch.set_rng_state(tensors["rng/torch"])
        except KeyError as exc:
            raise CheckpointError(f"{file}: incomplete checkpoint: no {exc}") from None
        except (ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"{file}: damaged checkpoint: {str(exc).splitlines()[0]}") from None
        state.rollbacks = list(rollbacks)
        state.step = step
        if resuming and self.world.is_main:
            self.log.truncate(step)
