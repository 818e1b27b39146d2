"""``run.device`` and ``run.precision``: which device a run uses and where bf16 autocast applies.

``auto`` picks CUDA, then MPS, then the CPU. A device that is named but not available is
an error that names it (never a silent fall-back to the CPU). Under ``torchrun`` with
CUDA, ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK``: one GPU per process.

Precision: with ``run.precision = "bf16"`` the objective's loss (the energy's forward on
data and negatives) runs under ``torch.autocast(dtype=torch.bfloat16)``; parameters,
gradients, optimizer state and checkpoints stay fp32, and autocast keeps the ops it
deems unsafe in bf16 (reductions, ``pow``, ``exp``, ``log``…) in fp32. MCMC chains run
in fp32 even inside the bf16 loss: :func:`ebmcore.sampling.run_chain` turns autocast off
for the chain unless ``run.sampling_precision = "bf16"`` asks for it
(:func:`ebmcore.sampling.sampling_precision`).
"""

from __future__ import annotations

import contextlib

import torch

from ebmcore.errors import EbmError
from ebmcore.sampling import PRECISIONS
from ebmcore.train.recipe import DEVICE_PATTERN


def _mps_available() -> bool:
    return torch.backends.mps.is_available()


def resolve_device(spec: str, *, local_rank: int | None = None) -> torch.device:
    """The torch device for ``run.device``; ``local_rank`` (under torchrun) picks the GPU."""
    if not DEVICE_PATTERN.match(spec):
        raise EbmError(f"$.run.device: {spec!r} is not a device: use 'auto', 'cpu', 'cuda', "
                       "'cuda:N' or 'mps'")
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise EbmError("$.run.device: 'mps' is not available here (it needs Apple silicon and a "
                           "torch built with MPS); use 'auto' or 'cpu'")
        if local_rank is not None:
            raise EbmError("$.run.device: 'mps' has one device: distributed runs use 'cpu' or 'cuda'")
        return torch.device("mps")
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise EbmError(f"$.run.device: {spec!r} is not available ({why}; torch {torch.__version__}); "
                       "use 'auto' or 'cpu'")
    count = torch.cuda.device_count()
    if ":" in spec:
        if local_rank is not None:
            raise EbmError(f"$.run.device: {spec!r} names one GPU, but under torchrun each process takes "
                           "cuda:LOCAL_RANK: use 'cuda' or 'auto' (and CUDA_VISIBLE_DEVICES to choose GPUs)")
        index = int(spec.split(":")[1])
    else:
        index = local_rank or 0
    if index >= count:
        raise EbmError(f"$.run.device: cuda:{index} is not available: {count} CUDA device(s) visible")
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device, key: str = "run.precision") -> None:
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise EbmError(f"$.{key}: 'bf16' is not supported by {torch.cuda.get_device_name(device)}; use 'fp32'")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for ``precision`` ("fp32": nothing)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
