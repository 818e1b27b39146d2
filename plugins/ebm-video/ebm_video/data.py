"""Clips of video as data: ``video`` (a file, a folder of frames, or the dynamic texture
Debian ships) and ``moving_digits`` (a synthetic set made by code, for tests).

An example is one clip ``(channels, frames, height, width)``, the layout of 3-D
convolutions; samples are scored by :mod:`ebm_video.metrics`. The held-out split of ``video`` is temporal: the clips of the last
``heldout`` share of the frames, never overlapping a training clip, so a model is scored
on motion it has not seen. Training and held-out clips start every ``stride`` frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ebm_video.io import video_chunks
from ebm_video.metrics import VideoMetrics
from ebm_video.pictures import clips_gif, clips_png
from ebm_video.streaming import FileClips, FrameFile
from ebmcore import Batch, Data, EbmError
from ebmcore import config as cfg
from ebmcore.kit.memory import check_fits, tensor_bytes
from ebmcore.kit.streaming import DecodedStream, spaced

#: Debian's ``opencv-doc`` ships this classic dynamic texture (a tree swaying by a window)
TREE_AVI = Path("/usr/share/doc/opencv-doc/examples/data/tree.avi")
NAMED = {"tree": (TREE_AVI, "opencv-doc")}


def _pair(kind: type, *, positive: bool = True):
    def check(_inst, attribute, value):
        if value is None:
            return
        if len(value) != 2 or not all(isinstance(v, kind) for v in value):
            raise ValueError(f"must be two numbers, got {value!r}")
        if positive and min(value) <= 0:
            raise ValueError(f"must be positive, got {list(value)}")
    return check


def _window(_inst, _attr, value):
    if value is not None and not (len(value) == 2 and 0 <= value[0] < value[1]):
        raise ValueError(f"must be [start, stop) seconds with 0 ≤ start < stop, got {list(value)}")


def _crop(_inst, _attr, value):
    if value is not None and not (len(value) == 4 and min(value[:2]) >= 0 and min(value[2:]) > 0):
        raise ValueError(f"must be [top, left, height, width] pixels, height and width > 0, got {list(value)}")


def _fraction(_inst, _attr, value):
    if not 0 < value < 1:
        raise ValueError(f"must be in (0, 1), got {value}")


@attrs.frozen
class VideoConfig:
    """Clips from one video: a file FFmpeg reads, a folder of frames, or a named video."""

    path: str | None = cfg.doc("a video file (.avi, .mp4, .gif, …) or a folder of frames (name order); "
                               "or set name", default=None)
    name: Literal["tree"] | None = cfg.doc("a video that installs as a package: 'tree' (Debian's opencv-doc: "
                                           "a tree swaying by a window, 68 frames in 29.6 s)", default=None)
    seconds: tuple[float, float] | None = attrs.field(
        default=None, validator=_window, metadata={"doc": "[start, stop): the part of the video used (default all)"})
    crop: tuple[int, int, int, int] | None = attrs.field(
        default=None, validator=_crop, metadata={"doc": "[top, left, height, width] in the source's pixels"})
    size: tuple[int, int] = attrs.field(default=(64, 64), validator=_pair(int),
                                        metadata={"doc": "[height, width] of the frames after cropping"})
    channels: Literal[1, 3] = cfg.doc("1: grey, 3: RGB", default=1)
    clip: int = cfg.positive("frames per clip (an example)", default=8)
    stride: int = cfg.positive("frames between the starts of consecutive clips (training and held-out)", default=1)
    heldout: float = attrs.field(default=0.2, validator=_fraction,
                                 metadata={"doc": "the last share of the frames, held out (a temporal split)"})
    fps: float = cfg.positive("frames per second of a folder of frames", default=15.0)
    batch_size: int = cfg.positive("clips per optimisation step", default=16)
    memory_mb: float = cfg.positive("the most memory the training clips may take (float32); a longer video "
                                    "streams: its prepared frames go to a temporary file ($TMPDIR) and the "
                                    "batches' clips are read from it", default=2048.0)
    workers: int = cfg.non_negative("a streamed video: processes reading the next batches ahead of training "
                                    "(0: in the training process)", default=2)

    def __attrs_post_init__(self):
        if (self.path is None) == (self.name is None):
            raise ValueError("set exactly one of path (a file or folder) and name (a packaged video)")


def clips(frames: Tensor, length: int, stride: int) -> Tensor:
    """Windows of ``length`` consecutive frames of ``(T, C, H, W)``, starting every ``stride``:
    ``(N, C, length, H, W)``."""
    starts = range(0, len(frames) - length + 1, stride)
    return torch.stack([rearrange(frames[s:s + length], "t c h w -> c t h w") for s in starts])


class ClipData(Data):
    """Clips ``(C, T, H, W)`` in [−1, 1]: training clips and held-out ones; pictures as a
    grid (one clip per row, its frames left to right) and an animated GIF."""

    def __init__(self, train: Tensor, heldout: Tensor | None, *, batch_size: int, name: str):
        self.x, self._heldout, self.batch_size, self.name = train.contiguous(), heldout, batch_size, name
        self.event_shape = tuple(train.shape[1:])
        self._metrics: VideoMetrics | None = None

    def dataset(self) -> Batch:
        return Batch(self.x)

    def heldout(self) -> Batch | None:
        return None if self._heldout is None else Batch(self._heldout)

    def save_samples(self, x: Tensor, path: Path) -> None:
        clips_png(x, Path(path))

    def evaluate(self, samples: Tensor) -> dict[str, float]:
        """``video`` (:mod:`ebm_video.metrics`: statistics over time against the held-out
        clips) beside its yardsticks."""
        if self._heldout is None:
            return {}
        if self._metrics is None:
            self._metrics = VideoMetrics(self.x, self._heldout)
        return self._metrics(samples)

    def report(self, out_dir: Path, samples: Tensor, energy) -> list[Path]:
        path = Path(out_dir) / "samples.gif"
        clips_gif(samples, path)
        return [path]


class VideoData(ClipData):
    """The clips of one video, in memory; a video whose clips exceed ``memory_mb`` streams
    (:class:`StreamedVideo`)."""

    @classmethod
    def from_config(cls, c: VideoConfig, ctx=None) -> ClipData:
        if c.name is not None:
            path, package = NAMED[c.name]
            if not path.exists():
                raise EbmError(f"{path}: not found; the video '{c.name}' ships in Debian's {package} package "
                               f"(apt-get install {package})")
        else:
            path = Path(c.path)
        budget = c.memory_mb * 2**20
        kept: list[Tensor] = []  # the prepared frames, while their clips fit the budget
        spilled: FrameFile | None = None
        count = 0
        for chunk in video_chunks(path, seconds=c.seconds, crop=c.crop, size=c.size, channels=c.channels, fps=c.fps):
            count += len(chunk.x)
            frame_bytes = tensor_bytes(*chunk.x.shape[1:])
            if spilled is None and count * frame_bytes * max(1, c.clip / c.stride) > budget:
                spilled = FrameFile(chunk.x.shape[1:], str(path))
                for x in kept:
                    spilled.append(x)
                kept = []
            if spilled is None:
                kept.append(chunk.x)
            else:
                spilled.append(chunk.x)
        held = max(1, round(c.heldout * count))
        if held < c.clip or count - held < c.clip:
            raise EbmError(f"$.data.clip = {c.clip}: {path} gives {count} frames in the window, "
                           f"{count - held} to train on and {held} held out ($.data.heldout = {c.heldout}); "
                           f"each part needs at least one clip")
        if spilled is None:
            check_fits("$.data.memory_mb", count * frame_bytes * (1 + max(1, c.clip / c.stride)),
                       what=f"the frames and clips of {path}; a smaller memory_mb streams them")
            frames = torch.cat(kept)
            train, test = frames[:-held], frames[-held:]
            return cls(clips(train, c.clip, c.stride), clips(test, c.clip, c.stride), batch_size=c.batch_size,
                       name=str(path))
        split = count - held
        train = FileClips(spilled, list(range(0, split - c.clip + 1, c.stride)), c.clip)
        test = FileClips(spilled, list(range(split, count - c.clip + 1, c.stride)), c.clip)
        each = max(2, int(budget / 4 // (c.clip * frame_bytes)))  # 2: a Gaussian fits
        return StreamedVideo(train, spaced(train, each), spaced(test, each), batch_size=c.batch_size,
                             workers=c.workers, name=str(path))


class StreamedVideo(ClipData):
    """The training clips of a video as a :class:`~ebmcore.kit.streaming.DecodedStream` of
    its frames on disk; ``reference`` (training clips spaced evenly) and ``heldout`` in memory
    for the metric."""

    def __init__(self, clips: FileClips, reference: Tensor, heldout: Tensor, *, batch_size: int, workers: int,
                 name: str):
        super().__init__(reference, heldout, batch_size=batch_size, name=name)
        self.clips, self.workers = clips, workers

    def dataset(self) -> Batch:
        return Data.dataset(self)  # it streams: there is no in-memory training set

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1) -> DecodedStream:
        return DecodedStream(self.clips, None, batch_size=self.batch_size, rng=rng, rank=rank, world=world,
                             workers=self.workers)


# -- moving digits ---------------------------------------------------------------------------

@attrs.frozen
class MovingDigitsConfig:
    """Synthetic clips: scikit-learn digits (data 'digits') gliding across a dark square, bouncing off its edges."""

    n: int = cfg.positive("training clips", default=256)
    heldout: int = cfg.positive("held-out clips (held-out digits, motions drawn from another seed)", default=64)
    clip: int = cfg.positive("frames per clip", default=8)
    size: int = attrs.field(default=24, validator=attrs.validators.ge(12),
                            metadata={"doc": "side of the square frames (pixels; at least 12)"})
    digit: int = attrs.field(default=12, validator=attrs.validators.ge(4),
                             metadata={"doc": "side of each digit (pixels; the 8×8 digits are resized)"})
    speed: float = cfg.positive("pixels per frame", default=2.0)
    seed: int = cfg.non_negative("seed of the training clips (the held-out ones use seed + 1)", default=0)
    batch_size: int = cfg.positive("clips per optimisation step", default=32)

    def __attrs_post_init__(self):
        if self.digit >= self.size:
            raise ValueError(f"digit ({self.digit}) must be smaller than size ({self.size})")


def moving_digits(digits: Tensor, n: int, *, clip: int, size: int, speed: float, seed: int) -> Tensor:
    """``n`` clips ``(1, clip, size, size)`` in [−1, 1], each of one of the square images
    ``digits`` (N, 1, d, d) moving in a straight line at ``speed`` pixels per frame from a
    random place in a random direction, reflected at the edges (positions rounded to whole
    pixels); where a digit overlaps the ground the brighter pixel shows."""
    g = torch.Generator().manual_seed(seed)
    d = digits.shape[-1]
    which = torch.randint(len(digits), (n,), generator=g)
    room = size - d
    pos = torch.rand(n, 2, generator=g) * room
    angle = torch.rand(n, generator=g) * 2 * torch.pi
    velocity = speed * torch.stack([angle.cos(), angle.sin()], 1)
    out = torch.full((n, 1, clip, size, size), -1.0)
    for t in range(clip):
        # a triangle wave folds the straight path back into [0, room]: a bounce at each edge
        p = (pos + t * velocity).remainder(2 * room)
        p = torch.where(p > room, 2 * room - p, p).round().long()
        for i in range(n):
            r, c = p[i].tolist()
            window = out[i, 0, t, r:r + d, c:c + d]
            window.copy_(torch.maximum(window, digits[which[i], 0]))
    return out


class MovingDigitsData(ClipData):
    @classmethod
    def from_config(cls, c: MovingDigitsConfig, ctx) -> "MovingDigitsData":
        # the digits through the registry (ebm-image's data 'digits'): its training digits
        # move in the training clips, its held-out digits in the held-out clips
        digits = ctx.build("data", "digits")
        train, held = (F.interpolate(x, size=(c.digit, c.digit), mode="bilinear", align_corners=False).clamp(-1, 1)
                       for x in (digits.dataset().x, digits.heldout().x))
        kw = {"clip": c.clip, "size": c.size, "speed": c.speed}
        return cls(moving_digits(train, c.n, seed=c.seed, **kw), moving_digits(held, c.heldout, seed=c.seed + 1, **kw),
                   batch_size=c.batch_size, name="moving_digits")
