"""Reading videos: a file FFmpeg decodes (``.avi``, ``.mp4``, ``.gif``…, through PyAV) or a
folder of numbered frames, as float frames in [−1, 1], cropped, grey or colour, resized.

Only the frames of the asked time window are kept; decoding stops at its end, and frames
are cropped and resized a chunk at a time (:func:`video_chunks`), so a long video costs the
memory of its prepared frames, never of the file (a streamed video keeps even those on
disk: :mod:`ebm_video.streaming`). A file whose frames come at
irregular times (an AVI whose container repeats a frame by an empty chunk, as Debian's
``tree.avi`` does: 444 time slots, 68 coded frames) gives its *coded* frames, each with
its time, so no frame appears twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ebmcore import EbmError
from ebmcore.kit.files import open_regular
from ebmcore.kit.images import read_image
from ebmcore.kit.memory import check_fits, tensor_bytes

#: image files a folder of frames may hold
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class Frames:
    """Decoded frames ``(T, C, H, W)`` in [−1, 1] and their times in seconds."""

    def __init__(self, x: Tensor, times: list[float]):
        self.x, self.times = x, times


def _window(t: float, seconds: tuple[float, float] | None) -> int:
    """−1 before the window, 0 inside, 1 after."""
    if seconds is None:
        return 0
    return -1 if t < seconds[0] else 1 if t >= seconds[1] else 0


#: frames decoded before they are cropped and resized together (fewer where the frames are
#: large: the full-size frames held at once take at most CHUNK_BYTES as bytes and as floats)
CHUNK, CHUNK_BYTES = 256, 256 * 2**20


def _decoded(path: Path, seconds: tuple[float, float] | None) -> Iterator[tuple[np.ndarray, float, str]]:
    """The RGB frames (H, W, 3) uint8 of a video file inside the window, with their times
    and names."""
    with open_regular(path, what="a video") as f:
        try:
            with av.open(f, mode="r") as container:
                if not container.streams.video:
                    raise EbmError(f"{path}: has no video stream")
                stream = container.streams.video[0]
                for index, frame in enumerate(container.decode(stream)):
                    # a frame without a time stamp is placed by its index at the stream's rate
                    t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 1)
                    where = _window(t, seconds)
                    if where > 0:
                        break  # past the window: the rest is never decoded
                    if where == 0:
                        yield frame.to_ndarray(format="rgb24"), t, f"{path}, frame {index}"
        except av.error.FFmpegError as exc:
            raise EbmError(f"{path}: cannot read it as a video: {exc}") from None


def _folder(path: Path, fps: float, seconds: tuple[float, float] | None) -> Iterator[tuple[np.ndarray, float, str]]:
    """The frames of a folder of images, in name order, at ``fps`` frames per second, with
    their times and files."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)
    if not files:
        raise EbmError(f"{path}: no frames found (extensions: {', '.join(FRAME_EXTENSIONS)})")
    for i, p in enumerate(files):
        if _window(i / fps, seconds) == 0:
            yield np.asarray(read_image(p, "RGB"), dtype=np.uint8), i / fps, str(p)


def _prepared(frames: list[np.ndarray], path: Path, crop: tuple[int, int, int, int] | None,
              size: tuple[int, int] | None, channels: int, key: str) -> Tensor:
    """RGB frames (H, W, 3) uint8 → ``(T, C, H, W)`` in [−1, 1], cropped, grey or RGB, resized."""
    x = torch.from_numpy(np.stack(frames))  # (T, H, W, 3) uint8
    if crop is not None:
        top, left, height, width = crop
        if top + height > x.shape[1] or left + width > x.shape[2]:
            raise EbmError(f"{key}.crop = {list(crop)} (top, left, height, width) does not fit the "
                           f"{x.shape[2]}×{x.shape[1]} frames of {path}")
        x = x[:, top:top + height, left:left + width]
    x = rearrange(x, "t h w c -> t c h w").float() / 127.5 - 1
    if channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=size[0] < x.shape[-2] or size[1] < x.shape[-1])
    return x.clamp(-1, 1).contiguous()


def video_chunks(path: str | Path, *, seconds: tuple[float, float] | None = None,
                 crop: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None,
                 channels: int = 1, fps: float = 15.0, key: str = "$.data") -> Iterator[Frames]:
    """The frames of ``path`` (a video file or a folder of frames at ``fps``) whose time in
    seconds lies in ``seconds`` = [start, stop), cropped to ``crop`` = (top, left, height,
    width) in the source's pixels, grey (ITU-R 601 luma) or RGB, and resized to ``size`` =
    (height, width), as consecutive chunks of at most :data:`CHUNK` frames: a caller keeps
    the prepared frames only. Errors name the file, or ``key`` (the recipe section) for
    settings; a window without frames is one."""
    path = Path(path)
    frames, times, count, chunk, first = [], [], 0, CHUNK, None
    for frame, t, name in _folder(path, fps, seconds) if path.is_dir() else _decoded(path, seconds):
        first = first or frame.shape
        if frame.shape != first:
            raise EbmError(f"{name}: {frame.shape[1]}×{frame.shape[0]} pixels, but the first frame of {path} "
                           f"has {first[1]}×{first[0]}")
        if not frames:
            chunk = max(1, min(CHUNK, CHUNK_BYTES // tensor_bytes(*frame.shape, itemsize=1 + 4)))
            check_fits(f"{key}.path", tensor_bytes(chunk, *frame.shape, itemsize=1 + 4),
                       what=f"{chunk} frames of {frame.shape[1]}×{frame.shape[0]} of {path} at once")
        frames.append(frame)
        times.append(t)
        count += 1
        if len(frames) == chunk:
            yield Frames(_prepared(frames, path, crop, size, channels, key), times)
            frames, times = [], []
    if frames:
        yield Frames(_prepared(frames, path, crop, size, channels, key), times)
    elif not count:
        raise EbmError(f"{path}: no frames in the window {key}.seconds = {list(seconds or ())}")


def read_video(path: str | Path, *, key: str = "$.data", **settings) -> Frames:
    """The frames of :func:`video_chunks` (the same settings) in memory at once."""
    x, times = [], []
    for chunk in video_chunks(path, key=key, **settings):
        check_fits(f"{key}.seconds", tensor_bytes(sum(map(len, x)) + 2 * len(chunk.x), *chunk.x.shape[1:]),
                   what=f"the frames of {path}")
        x.append(chunk.x)
        times += chunk.times
    return Frames(torch.cat(x), times)
