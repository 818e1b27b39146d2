"""Checkpoints: a safetensors file of tensors and a JSON sidecar, both written atomically.

``step-000100.safetensors`` holds modules, optimizer state, replay buffers and RNG states;
``step-000100.json`` holds the step, the non-tensor state, versions and a SHA-256 that
covers the tensor file and the rest of the sidecar together (format 2; format 1 hashed the
tensors only and still loads). The JSON is written last and is the commit mark: a
checkpoint without it, or whose hash does not match, is not a checkpoint. Nothing is
pickled, and loading trusts nothing: only regular files of bounded size are read, the
sidecar is checked against its schema, and every failure is one :class:`CheckpointError`
naming the file.
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
from ebmcore.kit.files import atomic_write, read_regular
from ebmcore.kit.memory import available_bytes

FORMAT = 2
#: formats this version loads
READS = (1, 2)
_NAME = re.compile(r"^step-(\d+)\.json$")
#: suffixes of files that torch.save / pickle write; never loaded, named when found
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
#: a sidecar is small (optimizer hyperparameters, versions, rollbacks); more is not one
SIDECAR_LIMIT = 16 << 20
#: a sidecar's keys and their JSON types (``step`` is checked against the file name too)
SCHEMA: dict[str, type] = {
    "format": int, "step": int, "sha256": str, "optim": dict, "versions": dict, "rng_states": list,
    "data_stream": list, "rollbacks": list, "world_size": int, "parameter_sha256": list}
REQUIRED = ("format", "step", "sha256", "optim")


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


def is_safetensors(blob: bytes) -> bool:
    """Whether ``blob`` starts like a safetensors file: an 8-byte little-endian header length,
    then a JSON object of that length inside the file. Checked before any pickle sniffing: a
    header of 640–1,408 bytes makes the file start with the bytes of a pickle marker."""
    if len(blob) < 8:
        return False
    n = int.from_bytes(blob[:8], "little")
    if n < 2 or 8 + n > len(blob):
        return False
    try:
        header = json.loads(blob[8:8 + n])
    except (ValueError, RecursionError):
        return False
    return isinstance(header, dict)


def _digest(blob: bytes, sidecar: dict[str, Any]) -> str:
    """Format 2's SHA-256: the tensor file, then the sidecar's other keys as canonical JSON."""
    rest = {k: v for k, v in sidecar.items() if k != "sha256"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.sha256(blob + b"\n" + canonical).hexdigest()


def save(directory: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    blob = safetensors.torch.save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    stem = directory / f"step-{step:06d}"
    atomic_write(stem.with_suffix(".safetensors"), blob)
    sidecar = {"format": FORMAT, "step": step, **meta}
    sidecar["sha256"] = _digest(blob, sidecar)
    atomic_write(stem.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
    return stem


def steps(directory: Path) -> list[int]:
    """Steps that have a committed sidecar, ascending."""
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def _sidecar(side: Path, step: int) -> dict[str, Any]:
    """The sidecar of ``step``, parsed and checked against :data:`SCHEMA`."""
    raw = read_regular(side, limit=SIDECAR_LIMIT, what="a checkpoint sidecar", error=CheckpointError)
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{side}: not a checkpoint sidecar (not JSON: {str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{side}: not a checkpoint sidecar (a JSON {type(meta).__name__}, not an object)")
    if meta.get("format") not in READS:
        raise CheckpointError(f"{side}: checkpoint format {meta.get('format')!r}; this ebm reads "
                              f"{', '.join(map(str, READS))}")
    problems = [f"'{k}' is missing" for k in REQUIRED if k not in meta]
    problems += [f"'{k}' is a JSON {type(meta[k]).__name__}" for k, t in SCHEMA.items()
                 if k in meta and (not isinstance(meta[k], t) or isinstance(meta[k], bool))]
    if not problems and meta["step"] != step:
        problems.append(f"'step' is {meta['step']}, the file name says {step}")
    if problems:
        raise CheckpointError(f"{side}: not a valid checkpoint sidecar: {'; '.join(problems)}")
    return meta


def load(directory: Path, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load one checkpoint, checking its hash; errors name the file."""
    stem = directory / f"step-{step:06d}"
    side, blob_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    meta = _sidecar(side, step)
    blob = read_regular(blob_path, limit=available_bytes(), what="a checkpoint", error=CheckpointError)
    try:
        expected = hashlib.sha256(blob).hexdigest() if meta["format"] == 1 else _digest(blob, meta)
    except ValueError:  # NaN or Infinity: never written by ebm
        raise CheckpointError(f"{side}: a non-finite number in the sidecar (modified)") from None
    if expected != meta["sha256"]:
        raise CheckpointError(f"{blob_path}: contents do not match the hash in {side.name} "
                              "(the tensors or the sidecar were truncated or modified)")
    if not is_safetensors(blob):
        refuse_pickle(blob_path, blob, "a safetensors file")
        raise CheckpointError(f"{blob_path}: not a safetensors file")
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
