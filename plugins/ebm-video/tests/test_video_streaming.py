"""A video whose clips exceed ``memory_mb`` streams: its prepared frames in an unnamed
temporary file, the same clips and batches as in memory, an exact resume after SIGKILL
mid-epoch, and a full disk ends in an error naming the folder."""

import os

import numpy as np
import pytest
import tomli_w
import torch
from ebm_video.data import StreamedVideo
from ebm_video.io import CHUNK
from ebm_video.streaming import FrameFile
from support import killed_and_resumed

from ebmcore import EbmError
from ebmcore.build import build

FRAMES = CHUNK + 60  # the frames cross a chunk's end


@pytest.fixture(scope="module")
def long_video(tmp_path_factory, write_mkv):
    """Frames of 12×12 each with its own pattern, lossless."""
    t = np.arange(FRAMES)[:, None, None]
    pattern = (np.arange(144).reshape(12, 12) * 7 + t * 13) % 256
    frames = np.repeat(pattern[..., None], 3, axis=3).astype(np.uint8)
    return write_mkv(tmp_path_factory.mktemp("video") / "long.mkv", frames, fps=10)


def video(path, **keys):
    return build("data", "video", path=str(path), size=[12, 12], clip=4, stride=2, batch_size=8, **keys)


def test_a_long_video_streams_the_clips_it_holds_in_memory_otherwise(long_video, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    memory = video(long_video)
    streamed = video(long_video, memory_mb=0.1, workers=0)
    assert isinstance(streamed, StreamedVideo) and not isinstance(memory, StreamedVideo)
    assert list(tmp_path.iterdir()) == []  # the frames' file has no name: nothing is left behind
    x = memory.dataset().x
    assert len(streamed.clips) == len(x) and streamed.event_shape == memory.event_shape == (1, 4, 12, 12)
    assert all(torch.equal(streamed.clips(j), x[j]) for j in range(len(x)))
    with pytest.raises(EbmError, match="streams its data"):
        streamed.dataset()
    # the metric's clips: spaced evenly through each part, within a quarter of memory_mb
    clip_bytes = 4 * 12 * 12 * 4
    assert 1 < len(streamed.heldout().x) <= 0.1 * 2**20 / 4 / clip_bytes
    held = memory.heldout().x.flatten(1)
    assert all((held == row).all(1).any() for row in streamed.heldout().x.flatten(1))
    assert set(streamed.evaluate(streamed.heldout().x)) == set(memory.evaluate(memory.heldout().x))
    for workers in (0, 2):
        a, b = (d.stream(torch.Generator().manual_seed(4)) for d in
                (memory, video(long_video, memory_mb=0.1, workers=workers)))
        for _ in range(2 * len(x) // 8):  # two epochs
            assert torch.equal(a.next().x, b.next().x)


def test_a_full_disk_names_the_folder_and_says_what_to_do(monkeypatch):
    frames = FrameFile((1, 2, 2), "clip.mkv")

    def full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EbmError, match=r"cannot keep the prepared frames of clip\.mkv \(No space left on device\); "
                                       r"set TMPDIR"):
        frames.append(torch.zeros(3, 1, 2, 2))


def _recipe(path, video_path):
    recipe = {"run": {"seed": 0, "steps": 30, "log_every": 1, "checkpoint_every": 5, "eval_every": 0,
                      "sample_every": 0, "eval_samples": 8},
              "data": {"type": "video", "path": str(video_path), "size": [12, 12], "clip": 4, "stride": 2,
                       "batch_size": 8, "memory_mb": 0.1},
              "energy": {"type": "stconvnet", "channels": [4, 4], "kernels": [[3, 3, 3], [3, 3, 3]],
                         "strides": [[1, 2, 2], [1, 2, 2]]},
              "sampler": {"type": "langevin", "n_steps": 2, "step_size": 0.1, "noise": 0.01},
              "generator": {"type": "uniform", "low": -1.0, "high": 1.0},
              "objective": {"type": "mle"},
              "optim": {"energy": {"type": "adam", "lr": 1e-3}}}
    path.write_text(tomli_w.dumps(recipe))
    return path


def test_a_streamed_video_run_killed_mid_epoch_resumes_exactly(long_video, tmp_path):
    full, resumed = killed_and_resumed(_recipe(tmp_path / "r.toml", long_video), tmp_path)  # mid-epoch: 15 batches an epoch
    assert resumed == full and len(full) == 30


def test_clips_within_memory_mb_but_beyond_the_machine_name_the_key(long_video, monkeypatch):
    from ebmcore.kit import memory

    monkeypatch.setattr("ebm_video.io.CHUNK", 64)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 400 * 2**10)  # a chunk fits, the clips do not
    with pytest.raises(EbmError, match=r"^\$\.data\.memory_mb: needs an estimated .* \(the frames and clips of "
                                       r".*long\.mkv; a smaller memory_mb streams them\)"):
        video(long_video)
    assert isinstance(video(long_video, memory_mb=0.1, workers=0), StreamedVideo)  # streamed, it trains
