"""Checkpoints: a safetensors file of tensors and a JSON sidecar, both written atomically.

``step-000100.safetensors`` holds modules, optimizer state, replay buffers and RNG states;
``step-000100.json`` holds the step, the non-tensor state, versions and the SHA-256 of the
tensor file. The JSON is written last and is the commit mark: a checkpoint without it, or
whose hash does not match, is not a checkpoint. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ebmcore.errors import WHY_NO_PICKLE, CheckpointError, pickle_format
from ebmcore.kit.files import atomic_write

FORMAT = 1
_NAME = re.compile(r"^step-(\d+)\.json$")
#: suffixes of files that torch.save / pickle write; never loaded, named when found
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")


def refuse_pickle(path: Path, data: bytes | None = None, expected: str = "a checkpoint") -> None:
    """Raise :class:`CheckpointError` explaining the refusal if ``path`` holds a pickle."""
    if data is None:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
                f.seek(max(0, path.stat().st_size - 8))
                data = head + f.read()
        except OSError:
            return
    kind = pickle_format(data)
    if kind is not None:
        raise CheckpointError(f"{path}: this is {kind}, not {expected}; {WHY_NO_PICKLE}")


def save(directory: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    blob = safetensors.torch.save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    stem = directory / f"step-{step:06d}"
    atomic_write(stem.with_suffix(".safetensors"), blob)
    sidecar = {"format": FORMAT, "step": step, "sha256": hashlib.sha256(blob).hexdigest(), **meta}
    atomic_write(stem.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
    return stem


def steps(directory: Path) -> list[int]:
    """Steps that have a committed sidecar, ascending."""
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def load(directory: Path, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load one checkpoint, checking its hash; errors name the file."""
    stem = directory / f"step-{step:06d}"
    side, blob_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        meta = json.loads(side.read_text())
        blob = blob_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{side}: unreadable checkpoint: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{side}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{blob_path}: contents do not match the hash in {side.name} "
                              "(truncated or modified)")
    refuse_pickle(blob_path, blob, "a safetensors file")
    try:
        return safetensors.torch.load(blob), meta
    except Exception as exc:  # safetensors' own error type varies by version
        raise CheckpointError(f"{blob_path}: not a safetensors file: {exc}") from None


def load_latest(directory: Path, *, before: int | None = None) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]]:
    """The latest checkpoint (of a step < ``before`` if given)."""
    found = [s for s in steps(directory) if before is None or s < before]
    if not found:
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES) \
            if directory.is_dir() else []
        if pickles:
            raise CheckpointError(f"{directory}: no ebm checkpoint, and {', '.join(pickles)} will not be "
                                  f"loaded: {WHY_NO_PICKLE}")
        raise CheckpointError(f"{directory}: no checkpoint to resume from (the run stopped before "
                              "its first one: delete its directory to start again)")
    tensors, meta = load(directory, found[-1])
    return found[-1], tensors, meta


def optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into tensors and JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/{idx}/{key}"] = value
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "/"):
            idx, key = name[len(prefix) + 1:].split("/", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, plain in meta["plain"].items():
        state.setdefault(int(idx), {}).update(plain)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
