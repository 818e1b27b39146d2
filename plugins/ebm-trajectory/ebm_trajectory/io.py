"""Reading trajectories: BVH motion capture (a small parser and forward kinematics) and CSV.

A BVH file is text: ``HIERARCHY``, a tree of joints (``ROOT``/``JOINT`` name, ``{``,
``OFFSET x y z``, ``CHANNELS n`` names, children, ``End Site { OFFSET … }``, ``}``), then
``MOTION``, ``Frames: n``, ``Frame Time: seconds`` and one line of numbers per frame, the
channels of the joints in the order the hierarchy declares them (lines past ``Frames`` are ignored). Rotations are in degrees,
applied in the order their channels are listed (``Zrotation Yrotation Xrotation``:
R = Rz·Ry·Rx). Nothing is unpickled or evaluated; whatever is malformed ends in
:class:`ebmcore.EbmError` naming the file and the line.

:func:`joint_positions` turns the channels into the world positions of every joint (end
sites left out), ``(frames, joints, 3)``, by forward kinematics in float64.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ebmcore import EbmError
from ebmcore.kit.files import read_regular

#: the largest file read (the CMU clips of assimp-testmodels are 2 to 3.5 MB)
LIMIT = 256 << 20
_AXES = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
_POSITIONS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}


class Joint(NamedTuple):
    name: str
    parent: int  # −1 for the root
    offset: tuple[float, float, float]
    channels: tuple[str, ...]


class Motion(NamedTuple):
    """A parsed BVH file: its joints (in file order) and ``channels`` ``(frames, Σ channels)``."""

    joints: list[Joint]
    channels: Tensor
    frame_time: float

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


def _text(path: Path, what: str) -> str:
    data = read_regular(path, limit=LIMIT, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EbmError(f"{path}:{line}: not text (byte {exc.start} is not UTF-8); not a {what}") from None


def read_bvh(path: str | Path) -> Motion:
    """The joints and the frames of the BVH file ``path``."""
    path = Path(path)
    lines = _text(path, "BVH file").splitlines()
    # (line number, token) for every word of the hierarchy part
    pos = 0

    def fail(lineno: int, message: str):
        raise EbmError(f"{path}:{lineno}: {message}")

    tokens: list[tuple[int, str]] = []
    motion_line = None
    for i, line in enumerate(lines, 1):
        if line.strip() == "MOTION":
            motion_line = i
            break
        tokens += [(i, w) for w in line.split()]
    if not tokens or tokens[0][1] != "HIERARCHY":
        fail(tokens[0][0] if tokens else 1, "a BVH file starts with HIERARCHY")
    if motion_line is None:
        fail(len(lines), "no MOTION section")
    pos = 1

    def take(expect: str | None = None) -> tuple[int, str]:
        nonlocal pos
        if pos >= len(tokens):
            fail(motion_line, f"the hierarchy ends early{f' (expected {expect})' if expect else ''}")
        lineno, word = tokens[pos]
        pos += 1
        if expect is not None and word != expect:
            fail(lineno, f"expected {expect}, found {word!r}")
        return lineno, word

    def number(lineno: int, word: str) -> float:
        try:
            value = float(word)
        except ValueError:
            fail(lineno, f"expected a number, found {word!r}")
        if not math.isfinite(value):
            fail(lineno, f"{word!r} is not a finite number")
        return value

    joints: list[Joint] = []

    def joint(parent: int) -> None:
        lineno, name = take()
        take("{")
        l, w = take("OFFSET")
        offset = tuple(number(*take()) for _ in range(3))
        l, w = take("CHANNELS")
        l, w = take()
        if not w.isdigit() or int(w) > 6:
            fail(l, f"CHANNELS takes a count of at most 6, found {w!r}")
        channels = tuple(take()[1] for _ in range(int(w)))
        for c in channels:
            if c not in _AXES and c not in _POSITIONS:
                fail(l, f"unknown channel {c!r} of joint {name!r}")
        me = len(joints)
        joints.append(Joint(name, parent, offset, channels))  # type: ignore[arg-type]
        while True:
            l, w = take()
            if w == "}":
                return
            if w == "JOINT":
                joint(me)
            elif w == "End":
                take("Site")
                take("{")
                take("OFFSET")
                for _ in range(3):
                    number(*take())
                take("}")
            else:
                fail(l, f"expected JOINT, End Site or }}, found {w!r}")

    take("ROOT")
    joint(-1)
    if pos != len(tokens):
        fail(tokens[pos][0], f"unexpected {tokens[pos][1]!r} after the root joint's closing brace")

    width = sum(len(j.channels) for j in joints)
    header = [(i, line.strip()) for i, line in enumerate(lines[motion_line:], motion_line + 1)]
    if len(header) < 2 or not header[0][1].startswith("Frames:"):
        fail(motion_line + 1, "expected 'Frames: n' after MOTION")
    frames_text = header[0][1].split(":", 1)[1].strip()
    if not frames_text.isdigit():
        fail(header[0][0], f"expected a frame count, found {frames_text!r}")
    n = int(frames_text)
    if not header[1][1].startswith("Frame Time:"):
        fail(header[1][0], "expected 'Frame Time: seconds'")
    frame_time = number(header[1][0], header[1][1].split(":", 1)[1].strip())
    if frame_time <= 0:
        fail(header[1][0], f"the frame time must be positive, found {frame_time}")
    rows = [(i, t) for i, t in header[2:] if t]
    if len(rows) < n:  # more is fine: writers (Boxing_Toes.bvh) leave a frame past the count
        fail(header[-1][0] if rows else header[1][0], f"Frames: {n} but {len(rows)} frame lines")
    rows = rows[:n]
    values = torch.empty(n, width, dtype=torch.float64)
    for k, (i, t) in enumerate(rows):
        words = t.split()
        if len(words) != width:
            fail(i, f"{len(words)} numbers on a frame line, the hierarchy has {width} channels")
        try:
            values[k] = torch.tensor([float(w) for w in words], dtype=torch.float64)
        except ValueError:
            bad = next(w for w in words if not _is_float(w))
            fail(i, f"expected a number, found {bad!r}")
    if not torch.isfinite(values).all():
        k = int((~torch.isfinite(values)).any(1).nonzero()[0])
        fail(rows[k][0], "a frame holds a value that is not finite")
    return Motion(joints, values, frame_time)


def _is_float(w: str) -> bool:
    try:
        float(w)
        return True
    except ValueError:
        return False


def _rotation(axis: int, degrees: Tensor) -> Tensor:
    """Rotation matrices ``(frames, 3, 3)`` about the axis (0 x, 1 y, 2 z)."""
    a = torch.deg2rad(degrees)
    c, s = a.cos(), a.sin()
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def joint_positions(motion: Motion) -> Tensor:
    """World positions of every joint ``(frames, joints, 3)`` by forward kinematics: a
    joint's position is its parent's plus the parent's rotation applied to its offset (and
    its position channels); its rotation is the parent's times its own."""
    n = len(motion.channels)
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    rotations: list[Tensor] = []
    positions: list[Tensor] = []
    col = 0
    for j in motion.joints:
        local = torch.tensor(j.offset, dtype=torch.float64).expand(n, 3).clone()
        rot = eye
        for name in j.channels:
            v = motion.channels[:, col]
            col += 1
            if name in _POSITIONS:
                local[:, _POSITIONS[name]] += v
            else:
                rot = rot @ _rotation(_AXES[name], v)
        if j.parent < 0:
            positions.append(local)
            rotations.append(rot)
        else:
            parent_rot = rotations[j.parent]
            positions.append(positions[j.parent] + (parent_rot @ local.unsqueeze(-1)).squeeze(-1))
            rotations.append(parent_rot @ rot)
    return torch.stack(positions, 1)


def read_csv(path: str | Path) -> Tensor:
    """The numbers of a CSV file ``(rows, columns)`` (float64): one row per frame, one column
    per channel; a first line that is not all numbers is a header and skipped."""
    path = Path(path)
    lines = [(i, line) for i, line in enumerate(_text(path, "CSV file").splitlines(), 1) if line.strip()]
    if lines and not all(_is_float(w.strip()) for w in lines[0][1].split(",")):
        lines = lines[1:]
    if not lines:
        raise EbmError(f"{path}: no rows of numbers")
    width = len(lines[0][1].split(","))
    out = torch.empty(len(lines), width, dtype=torch.float64)
    for k, (i, line) in enumerate(lines):
        words = [w.strip() for w in line.split(",")]
        if len(words) != width:
            raise EbmError(f"{path}:{i}: {len(words)} columns, the first row has {width}")
        for w in words:
            if not _is_float(w) or not math.isfinite(float(w)):
                raise EbmError(f"{path}:{i}: expected a finite number, found {w!r}")
        out[k] = torch.tensor([float(w) for w in words], dtype=torch.float64)
    return out
