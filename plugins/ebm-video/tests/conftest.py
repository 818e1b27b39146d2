"""What the video tests share: lossless videos written by the test."""

import av
import pytest


def _write_mkv(path, frames, fps):
    """``frames`` (T, H, W, 3) uint8 as lossless FFV1 in Matroska at ``fps``."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for a in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def write_mkv():
    return _write_mkv
