"""Video for ebm: clips ``(channels, frames, height, width)`` as data — ``video`` (a file
FFmpeg reads, a folder of frames, or Debian's ``tree.avi`` dynamic texture) and
``moving_digits`` (synthetic) — with pictures as frame grids and animated GIFs, and the
spatial-temporal generative ConvNet energy ``stconvnet``, the video metric and the task
``recover`` (clips with frames or pixels missing, completed by masked sampling or by a
completion model: the energy ``clip_field`` of the missing values given the observed ones,
learned by the objective ``clip_completion_dsm``)."""

from ebm_video.completion import ClipCompletionDSM, ClipCompletionDSMConfig, ClipField, ClipFieldConfig
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
from ebm_video.metrics import VideoMetrics, clip_statistics
from ebm_video.pictures import clips_gif, clips_png
from ebm_video.tasks import Recover, RecoverConfig, interpolated, missing_mask, temporal_mean
from ebmcore import Component, hookimpl

__all__ = ["ClipCompletionDSM", "ClipCompletionDSMConfig", "ClipData", "ClipField", "ClipFieldConfig", "Frames",
           "MovingDigitsConfig", "MovingDigitsData", "Recover", "RecoverConfig", "STConvNet", "STConvNetConfig",
           "VideoConfig", "VideoData", "VideoMetrics", "clip_statistics", "clips", "clips_gif", "clips_png",
           "interpolated", "missing_mask", "moving_digits", "read_video", "temporal_mean"]


@hookimpl
def ebm_components():
    return [
        Component("data", "video", VideoConfig, VideoData.from_config),
        Component("data", "moving_digits", MovingDigitsConfig, MovingDigitsData.from_config),
        Component("energy", "stconvnet", STConvNetConfig, STConvNet.from_config),
        Component("energy", "clip_field", ClipFieldConfig, ClipField.from_config),
        Component("objective", "clip_completion_dsm", ClipCompletionDSMConfig, ClipCompletionDSM.from_config),
        Component("task", "recover", RecoverConfig, Recover.from_config, requires=("energy",)),
    ]
