"""Video for ebm: clips ``(channels, frames, height, width)`` as data — ``video`` (a file
FFmpeg reads, a folder of frames, or Debian's ``tree.avi`` dynamic texture) and
``moving_digits`` (synthetic) — with pictures as frame grids and animated GIFs, and the
spatial-temporal generative ConvNet energy ``stconvnet``."""

from ebm_video.data import (
    ClipData,
    MovingDigitsConfig,
    MovingDigitsData,
    VideoConfig,
    VideoData,
    clips,
    moving_digits,
)
from ebm_video.energies import STConvNet, STConvNetConfig
from ebm_video.io import Frames, read_video
from ebm_video.pictures import clips_gif, clips_png
from ebmcore import Component, hookimpl

__all__ = ["ClipData", "Frames", "MovingDigitsConfig", "MovingDigitsData", "STConvNet", "STConvNetConfig",
           "VideoConfig", "VideoData", "clips", "clips_gif", "clips_png", "moving_digits", "read_video"]


@hookimpl
def ebm_components():
    return [
        Component("data", "video", VideoConfig, VideoData.from_config),
        Component("data", "moving_digits", MovingDigitsConfig, MovingDigitsData.from_config),
        Component("energy", "stconvnet", STConvNetConfig, STConvNet.from_config),
    ]
