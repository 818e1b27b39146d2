"""Sizes checked before they are allocated: a recipe key that would need more memory than
the machine has is an error naming the key and the estimated bytes, not an allocator crash."""

from __future__ import annotations

import math
import os

import torch

from ebmcore.errors import EbmError
from ebmcore.kit.files import human_bytes


def available_bytes(device: torch.device | None = None) -> int:
    """Memory a new allocation can get: free memory of a CUDA ``device``; otherwise (the CPU,
    or MPS, which shares it) MemAvailable on Linux, else physical memory."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(key: str, n_bytes: float, *, what: str = "", device: torch.device | None = None) -> None:
    """Raise :class:`EbmError` naming ``key`` if ``n_bytes`` exceed the memory available
    (on ``device``, where the allocation will be; default the CPU)."""
    have = available_bytes(device)
    if not math.isfinite(n_bytes) or n_bytes > have:
        about = f" ({what})" if what else ""
        where = f" on {device}" if device is not None and device.type == "cuda" else ""
        raise EbmError(f"{key}: needs an estimated {human_bytes(n_bytes)}{about}, more than the "
                       f"{human_bytes(have)} of memory available{where}")


def tensor_bytes(*shape: int, itemsize: int = 4) -> int:
    """Bytes of a tensor of ``shape`` (float32 unless ``itemsize`` says otherwise)."""
    return math.prod(shape) * itemsize
