"""Data-parallel training under ``torchrun``: the world a run is in, and what crosses ranks.

``torchrun --nproc-per-node N -m ebmcore run recipe.toml`` starts N processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in the environment; the run
joins the process group (``nccl`` on CUDA, ``gloo`` otherwise). Without ``WORLD_SIZE`` (or
with ``WORLD_SIZE=1``) nothing here talks to anything: a world of one.

What crosses ranks (see docs/scaling.md): gradients (averaged per parameter group, after
each group's backward), the step's metrics (averaged) together with a "stop" flag (a
signal received by any rank), "bad" flags (divergence found in rank 0's evaluation or in
any rank's state), the per-rank state gathered into rank 0's checkpoint, the checkpoint
broadcast from rank 0 on resume, and rank 0's errors while opening the run directory.
Bytes travel as uint8 tensors of safetensors blobs: nothing is pickled, here either.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any

import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor

from ebmcore.errors import EbmError


class World:
    """This process's place in the run: ``rank`` of ``size`` (a world of one without torchrun)."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int | None = None):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.device = torch.device("cpu")  # where collectives run (the run's device under nccl)
        self._group: Any = None  # a gloo group for bytes and flags when the backend is nccl

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))

    def join(self, device: torch.device) -> None:
        """Join the process group (once per process) for a run on ``device``."""
        if not self.distributed:
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            # torch imports torch._dynamo lazily (the first optimizer does); imported after the
            # group exists, it keeps references to it (torch.distributed._shard), so that
            # destroy_process_group leaves gloo's threads running at exit: the likely cause of
            # the rank CI once saw abort there ("terminate called without an active exception")
            import torch._dynamo  # noqa: F401

            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        elif dist.get_backend() != backend:
            raise EbmError(f"the process group uses {dist.get_backend()}, but a run on {device} needs {backend}")
        self.device = device if backend == "nccl" else torch.device("cpu")
        self._group = dist.new_group(backend="gloo") if backend == "nccl" else None

    def leave(self) -> None:
        """Leave the process group once every rank got here: rank 0 may still be evaluating
        or running tasks, and a rank that tears gloo down early aborts the others (SIGABRT).
        After an error every rank usually gets here too (divergence, signals and recipe
        errors are decided together); where one does not, torchrun stops the others."""
        if self.distributed and dist.is_initialized():
            try:
                dist.barrier(group=self._group)
            finally:
                dist.destroy_process_group()

    def purpose(self, purpose: str) -> str:
        """A per-rank RNG purpose: rank 0 keeps ``purpose`` (so a world of one is the
        single-process run), rank r > 0 uses ``purpose/rank{r}``."""
        return purpose if self.rank == 0 else f"{purpose}/rank{self.rank}"

    # -- collectives (no-ops in a world of one) ----------------------------------------------

    def mean_(self, t: Tensor) -> Tensor:
        """Average ``t`` over ranks, in place (on the run's device)."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= self.size
        return t

    def reduce_metrics(self, metrics: dict[str, Tensor], stop: bool,
                       device: torch.device) -> tuple[dict[str, Tensor], bool]:
        """A step's metrics averaged over ranks, and whether any rank must stop (one all-reduce)."""
        if not self.distributed:
            return metrics, stop
        keys = list(metrics)
        flat = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]
                           + [torch.tensor(float(stop), device=device)])
        self.mean_(flat)
        return dict(zip(keys, flat[:-1].unbind())), bool(flat[-1] > 0)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._group)
        return bool(t.item())

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank."""
        if not self.distributed:
            return data
        n = torch.tensor([len(data) if self.is_main else 0], dtype=torch.int64)
        dist.broadcast(n, 0, group=self._group)
        buf = _bytes_tensor(data) if self.is_main else torch.empty(int(n), dtype=torch.uint8)
        if int(n):
            dist.broadcast(buf, 0, group=self._group)
        return bytes(buf.numpy()) if not self.is_main else data

    def gather_bytes(self, data: bytes) -> list[bytes] | None:
        """Every rank's ``data`` on rank 0 (in rank order); None elsewhere."""
        if not self.distributed:
            return [data]
        n = torch.tensor([len(data)], dtype=torch.int64)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        dist.all_gather(sizes, n, group=self._group)
        longest = max(int(s) for s in sizes)
        buf = torch.zeros(longest, dtype=torch.uint8)
        buf[:len(data)] = _bytes_tensor(data)
        bufs = [torch.empty(longest, dtype=torch.uint8) for _ in range(self.size)] if self.is_main else None
        dist.gather(buf, bufs, dst=0, group=self._group)
        if not self.is_main:
            return None
        return [bytes(b[:int(s)].numpy()) for b, s in zip(bufs, sizes)]

    def gather_tensors(self, tensors: dict[str, Tensor]) -> list[dict[str, Tensor]] | None:
        blob = safetensors.torch.save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
        blobs = self.gather_bytes(blob)
        return None if blobs is None else [safetensors.torch.load(b) for b in blobs]

    def rank0_first(self, fn: Any) -> Any:
        """Run ``fn`` on rank 0; an :class:`EbmError` there is raised on every rank."""
        error = None
        result = None
        if self.is_main:
            try:
                result = fn()
            except EbmError as exc:
                error = str(exc)
        message = self.broadcast_bytes((error or "").encode() if self.is_main else None).decode()
        if message:
            raise EbmError(message if self.is_main else f"(rank 0) {message}")
        return result

    def reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks: one flat all-reduce. A parameter
        that got no gradient on any rank keeps ``grad = None`` (as in a single process)."""
        if not self.distributed or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [has])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        flags = flat[-len(params):] > 0
        offset = 0
        for p, g, used in zip(params, grads, flags.tolist()):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if used else None
            offset += n

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters on every rank (buffers, such as replay buffers, are per rank)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for p in module.parameters():
                dist.broadcast(p.data, 0)

    def parameter_hashes(self, module: torch.nn.Module) -> list[str]:
        """The SHA-256 of each rank's parameters, in rank order (on every rank)."""
        h = hashlib.sha256()
        for name, p in module.named_parameters():
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        digest = torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8)
        if not self.distributed:
            return [h.hexdigest()]
        out = [torch.empty(32, dtype=torch.uint8) for _ in range(self.size)]
        dist.all_gather(out, digest, group=self._group)
        return [bytes(d.numpy()).hex() for d in out]


def _bytes_tensor(data: bytes) -> Tensor:
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
