"""Video input/output and preparation into the codec's working format."""

from .video import VideoInfo, VideoReadError, iter_frames, probe, write_video, read_frames
from .prepare import PrepareConfig, prepare_frames, prepare_video, is_prepared

__all__ = [
    "VideoInfo", "VideoReadError", "iter_frames", "probe", "write_video", "read_frames",
    "PrepareConfig", "prepare_frames", "prepare_video", "is_prepared",
]
