"""A video beyond memory: its prepared frames on disk, its clips read as the batches need them.

A long video's clips (windows of ``clip`` frames every ``stride``) hold each frame
``clip / stride`` times; past ``memory_mb`` they stream: the frames, decoded once and
prepared (cropped, grey or colour, resized) a chunk at a time, go to an unnamed temporary
file (in ``$TMPDIR``; the system removes it when the run ends, however it ends), and
:class:`ebmcore.kit.streaming.DecodedStream`'s workers read each batch's clips from it. The
metric's clips — training clips for its floor and the held-out ones — are spaced evenly
through their parts and held in memory, each set within a quarter of ``memory_mb``.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from ebmcore import EbmError


class FrameFile:
    """Frames ``(C, H, W)`` float32 appended to an unnamed temporary file and read back by
    index (``pread``: forked workers share the descriptor, not a position)."""

    def __init__(self, frame_shape: tuple[int, ...], source: str):
        self.frame_shape, self.source, self.count = tuple(frame_shape), source, 0
        self.frame_bytes = int(np.prod(self.frame_shape)) * 4
        self.file = tempfile.TemporaryFile(prefix="ebm-frames-", buffering=0)

    def __len__(self) -> int:
        return self.count

    def append(self, x: Tensor) -> None:
        data = x.float().contiguous().numpy().tobytes()
        try:
            written = 0
            while written < len(data):
                written += os.write(self.file.fileno(), data[written:])
        except OSError as exc:
            raise EbmError(f"{tempfile.gettempdir()}: cannot keep the prepared frames of {self.source} "
                           f"({exc.strerror or exc}); set TMPDIR to a folder with room") from None
        self.count += len(x)

    def read(self, start: int, stop: int) -> Tensor:
        n = (stop - start) * self.frame_bytes
        data = os.pread(self.file.fileno(), n, start * self.frame_bytes)
        if len(data) != n:
            raise RuntimeError(f"frames {start}..{stop} of {self.count}: the temporary file is short")
        return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy()).view(stop - start, *self.frame_shape)


class FileClips:
    """Clip ``j`` of the frames in a :class:`FrameFile`: ``(C, clip, H, W)``, frames
    ``starts[j]`` to ``starts[j] + clip``."""

    def __init__(self, frames: FrameFile, starts: list[int], clip: int):
        self.frames, self.starts, self.clip = frames, starts, clip

    def __len__(self) -> int:
        return len(self.starts)

    def __call__(self, j: int) -> Tensor:
        s = self.starts[j]
        return rearrange(self.frames.read(s, s + self.clip), "t c h w -> c t h w")
